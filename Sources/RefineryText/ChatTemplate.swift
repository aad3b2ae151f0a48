import Foundation
import RefineryCore

/// One chat message: a role (`system`, `user`, `assistant`, …) and its text.
public struct ChatMessage: Sendable, Equatable {
    public var role: String
    public var content: String
    /// Any further fields of the message (e.g. `name`), passed to the template as they are.
    public var extra: [(String, JSONValue)]

    public init(role: String, content: String, extra: [(String, JSONValue)] = []) {
        self.role = role
        self.content = content
        self.extra = extra
    }

    public static func == (lhs: ChatMessage, rhs: ChatMessage) -> Bool {
        lhs.role == rhs.role && lhs.content == rhs.content && JSONValue.object(lhs.extra) == JSONValue.object(rhs.extra)
    }

    var json: JSONValue { .object([("role", .string(role)), ("content", .string(content))] + extra) }
}

/// A compiled chat template (Jinja), rendered as transformers' `apply_chat_template` does:
/// `trim_blocks` and `lstrip_blocks` on, `raise_exception` and `strftime_now` available,
/// `tools`/`documents` defined as none.
public struct ChatTemplate: @unchecked Sendable {
    /// The template source.
    public let source: String
    private let nodes: [Node]

    /// Parses `source`; throws `TemplateError` with the line of a syntax error.
    public init(_ source: String) throws {
        self.source = source
        let pieces = try JinjaLexer.pieces(of: source)
        var parser = JinjaParser(pieces: pieces)
        nodes = try parser.parseTemplate()
    }

    /// Renders `messages`; `variables` adds or overrides context variables.
    public func render(
        messages: [ChatMessage], addGenerationPrompt: Bool = false,
        bosToken: String? = nil, eosToken: String? = nil, variables: [String: JSONValue] = [:]
    ) throws -> String {
        var globals: [String: JinjaValue] = [
            "messages": .list(messages.map { JinjaValue(json: $0.json) }),
            "add_generation_prompt": .bool(addGenerationPrompt),
            "tools": .none,
            "documents": .none,
            "raise_exception": .function(JinjaFunction(name: "raise_exception") { args, _ in
                throw TemplateError(args.first?.printed ?? "raise_exception called", raisedByTemplate: true)
            }),
            "range": .function(JinjaFunction(name: "range") { args, _ in
                let ints = args.compactMap { if case let .int(i) = $0 { return i } else { return nil } }
                guard ints.count == args.count, !ints.isEmpty else { throw TemplateError("range() takes integer arguments") }
                let (start, stop, step) = ints.count == 1 ? (0, ints[0], 1) : (ints[0], ints[1], ints.count > 2 ? ints[2] : 1)
                guard step != 0 else { throw TemplateError("range() step must not be zero") }
                return .list(Array(stride(from: start, to: stop, by: step)).map { .int($0) })
            }),
            "namespace": .function(JinjaFunction(name: "namespace") { args, kwargs in
                let box = NamespaceBox()
                if case let .dict(d)? = args.first { for (k, v) in d.pairs { box.values[k] = v } }
                for (k, v) in kwargs { box.values[.string(k)] = v }
                return .namespace(box)
            }),
            "dict": .function(JinjaFunction(name: "dict") { _, kwargs in
                var d = JinjaDict()
                for (k, v) in kwargs { d[.string(k)] = v }
                return .dict(d)
            }),
            "strftime_now": .function(JinjaFunction(name: "strftime_now") { args, _ in
                .string(Self.strftimeNow(args.first?.printed ?? "%Y-%m-%d"))
            }),
        ]
        if let bosToken { globals["bos_token"] = .string(bosToken) }
        if let eosToken { globals["eos_token"] = .string(eosToken) }
        for (key, value) in variables { globals[key] = JinjaValue(json: value) }
        return try JinjaInterpreter(globals: globals).render(nodes)
    }

    static func strftimeNow(_ format: String) -> String {
        var now = time(nil)
        var parts = tm()
        localtime_r(&now, &parts)
        var buffer = [Int8](repeating: 0, count: 256)
        let count = strftime(&buffer, buffer.count, format, &parts)
        return String(decoding: buffer[0..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
