import RefineryCore

/// A JSON Schema compiled for constrained decoding: the subset OpenAI's strict structured
/// outputs use — objects with their properties (written in the schema's order, every one of
/// them), arrays (`items`, `minItems`, `maxItems`), strings (`minLength`, `maxLength`, and the
/// pattern `\S`: at least one non-space character), numbers and integers, booleans, null, `enum`
/// and `const`, `type` lists and `anyOf` whose alternatives start differently, and local `$ref`s
/// to `$defs`/`definitions`. Anything else is refused with the keyword and where it is, never
/// silently ignored. Output is compact JSON (no insignificant whitespace).
public indirect enum JSONSchemaNode: Sendable, Equatable {
    /// Any JSON value (`{}` or `true` as a schema).
    case anyValue
    /// An object with exactly `properties`, in order; `freeForm`: any keys and values instead.
    case object(properties: [Property], freeForm: Bool)
    case array(items: JSONSchemaNode, minItems: Int, maxItems: Int?)
    /// `needsGraphic`: at least one printable non-space ASCII character (the pattern `\S`).
    case string(minLength: Int, maxLength: Int?, needsGraphic: Bool)
    case number(integer: Bool)
    case boolean
    case null
    /// Exactly one of these JSON texts (`enum`, `const`).
    case literals([[UInt8]])
    /// One of several kinds, told apart by their first byte.
    case choice([JSONSchemaNode])

    public struct Property: Sendable, Equatable {
        public var name: String
        public var node: JSONSchemaNode
    }

    /// Any JSON object (`response_format: json_object`).
    public static let anyObject = JSONSchemaNode.object(properties: [], freeForm: true)

    /// Compiles `schema`; refuses what it cannot enforce, naming the keyword and its path.
    public static func compile(_ schema: JSONValue) throws -> JSONSchemaNode {
        let node = try Compiler(root: schema).node(schema, path: "#", depth: 0)
        // minItems / minLength from outside may ask for documents no completion could hold (and
        // that computing the shortest one would have to build).
        guard node.shortestLength <= maximumShortestDocument else {
            throw SchemaError("the shortest document this schema allows is over \(maximumShortestDocument) bytes (minItems or minLength too large)")
        }
        return node
    }

    /// Largest shortest-document a schema may ask for.
    public static let maximumShortestDocument = 1 << 20

    /// Bytes of the shortest document of this node, saturating far above any limit.
    var shortestLength: Int {
        let cap = Int.max / 4
        func add(_ a: Int, _ b: Int) -> Int { min(cap, a + b) }
        func times(_ a: Int, _ b: Int) -> Int { let (product, overflow) = a.multipliedReportingOverflow(by: b); return overflow ? cap : min(cap, product) }
        switch self {
        case .anyValue, .number: return 1
        case .boolean, .null: return 4
        case let .literals(texts): return texts.map(\.count).min() ?? 0
        case let .choice(options): return options.map(\.shortestLength).min() ?? 0
        case let .string(minLength, _, needsGraphic): return add(2, max(minLength, needsGraphic ? 1 : 0))
        case let .array(items, minItems, _): return add(2, times(minItems, add(items.shortestLength, 1)))
        case let .object(properties, freeForm):
            if freeForm { return 2 }
            return properties.reduce(2) { add($0, add($1.name.utf8.count + 4, $1.node.shortestLength)) }
        }
    }

    /// The bytes that may start a value of this node.
    var firstBytes: Set<UInt8> {
        switch self {
        case .anyValue: return Set("{[\"-0123456789tfn".utf8)
        case .object: return [UInt8(ascii: "{")]
        case .array: return [UInt8(ascii: "[")]
        case .string: return [UInt8(ascii: "\"")]
        case .number: return Set("-0123456789".utf8)
        case .boolean: return Set("tf".utf8)
        case .null: return [UInt8(ascii: "n")]
        case let .literals(texts): return Set(texts.compactMap(\.first))
        case let .choice(options): return options.reduce(into: Set<UInt8>()) { $0.formUnion($1.firstBytes) }
        }
    }
}

/// Why a schema cannot be enforced.
public struct SchemaError: Error, Sendable, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

private struct Compiler {
    let root: JSONValue
    /// Keywords that only describe (or that strict mode requires) and change nothing here.
    static let descriptive: Set<String> = ["title", "description", "$schema", "$id", "$comment", "examples", "default", "strict",
                                           "additionalProperties", "required", "$defs", "definitions", "format"]

    func node(_ schema: JSONValue, path: String, depth: Int) throws -> JSONSchemaNode {
        guard depth < 64 else { throw SchemaError("the schema nests deeper than 64 levels at \(path) (a recursive $ref?)") }
        if case let .bool(allowed) = schema {
            guard allowed else { throw SchemaError("the schema at \(path) is false: no value can match it") }
            return .anyValue
        }
        guard case let .object(fields) = schema else { throw SchemaError("the schema at \(path) is not an object") }
        let keys = Set(fields.map(\.0))
        if let reference = schema["$ref"]?.stringValue { return try node(resolve(reference, at: path), path: reference, depth: depth + 1) }
        if let options = schema["anyOf"]?.arrayValue ?? schema["oneOf"]?.arrayValue {
            return try distinct(try options.enumerated().map { try node($0.element, path: "\(path)/anyOf/\($0.offset)", depth: depth + 1) }, path: path)
        }
        if let constant = schema["const"] { return .literals([Array(constant.compactText.utf8)]) }
        if let values = schema["enum"]?.arrayValue {
            guard !values.isEmpty else { throw SchemaError("the enum at \(path) is empty") }
            return .literals(values.map { Array($0.compactText.utf8) })
        }
        let type = schema["type"]
        if let kinds = type?.arrayValue {
            return try distinct(try kinds.map { kind in
                guard let name = kind.stringValue else { throw SchemaError("a type at \(path) is not a string") }
                return try typed(name, schema, keys: keys, path: path, depth: depth)
            }, path: path)
        }
        guard let name = type?.stringValue else {
            if keys.contains("properties") { return try typed("object", schema, keys: keys, path: path, depth: depth) }
            let unknown = keys.subtracting(Self.descriptive)
            guard unknown.isEmpty else { throw SchemaError("the schema at \(path) uses \(unknown.sorted().joined(separator: ", ")) without a type, which constrained decoding does not enforce") }
            return .anyValue
        }
        return try typed(name, schema, keys: keys, path: path, depth: depth)
    }

    private func typed(_ type: String, _ schema: JSONValue, keys: Set<String>, path: String, depth: Int) throws -> JSONSchemaNode {
        func refuse(_ allowed: Set<String>) throws {
            let unknown = keys.subtracting(Self.descriptive).subtracting(allowed).subtracting(["type"])
            guard unknown.isEmpty else {
                throw SchemaError("\(unknown.sorted().joined(separator: ", ")) at \(path) (type \(type)) is not enforced by constrained decoding; remove it or use what is: \(allowed.sorted().joined(separator: ", "))")
            }
        }
        func count(_ key: String) throws -> Int? {
            guard let value = schema[key] else { return nil }
            guard let number = value.intValue, number >= 0 else { throw SchemaError("\(key) at \(path) must be a whole number ≥ 0") }
            return number
        }
        switch type {
        case "object":
            try refuse(["properties"])
            let properties = schema["properties"]?.objectValue ?? []
            if properties.isEmpty, schema["additionalProperties"] != .bool(false) { return .anyObject }
            return .object(properties: try properties.map { name, value in
                .init(name: name, node: try node(value, path: "\(path)/properties/\(name)", depth: depth + 1))
            }, freeForm: false)
        case "array":
            try refuse(["items", "minItems", "maxItems"])
            let items = try schema["items"].map { try node($0, path: "\(path)/items", depth: depth + 1) } ?? .anyValue
            let minItems = try count("minItems") ?? 0, maxItems = try count("maxItems")
            if let maxItems, maxItems < minItems { throw SchemaError("maxItems \(maxItems) < minItems \(minItems) at \(path)") }
            return .array(items: items, minItems: minItems, maxItems: maxItems)
        case "string":
            try refuse(["minLength", "maxLength", "pattern"])
            var needsGraphic = false
            if let pattern = schema["pattern"] {
                guard pattern.stringValue == "\\S" else {
                    throw SchemaError("the pattern \(pattern.compactText) at \(path) is not enforced; the one pattern supported is \"\\\\S\" (a non-space character)")
                }
                needsGraphic = true
            }
            let minLength = try count("minLength") ?? 0, maxLength = try count("maxLength")
            if let maxLength, maxLength < max(minLength, needsGraphic ? 1 : 0) { throw SchemaError("maxLength \(maxLength) leaves no valid string at \(path)") }
            return .string(minLength: minLength, maxLength: maxLength, needsGraphic: needsGraphic)
        case "number", "integer":
            try refuse([])
            return .number(integer: type == "integer")
        case "boolean":
            try refuse([])
            return .boolean
        case "null":
            try refuse([])
            return .null
        default:
            throw SchemaError("unknown type \"\(type)\" at \(path)")
        }
    }

    /// Alternatives must start with different bytes (a string, a number, null…), so the first byte picks one.
    private func distinct(_ options: [JSONSchemaNode], path: String) throws -> JSONSchemaNode {
        guard !options.isEmpty else { throw SchemaError("anyOf at \(path) is empty") }
        if options.count == 1 { return options[0] }
        var seen = Set<UInt8>()
        for option in options {
            let first = option.firstBytes
            guard seen.isDisjoint(with: first) else {
                throw SchemaError("the alternatives at \(path) can start the same way (e.g. two objects or two strings); constrained decoding needs alternatives of different kinds")
            }
            seen.formUnion(first)
        }
        return .choice(options)
    }

    private func resolve(_ reference: String, at path: String) throws -> JSONValue {
        guard reference.hasPrefix("#/") else { throw SchemaError("the $ref \(reference) at \(path) is not local (#/$defs/…)") }
        var value = root
        for part in reference.dropFirst(2).split(separator: "/") {
            guard let next = value[String(part).replacingOccurrences(of: "~1", with: "/").replacingOccurrences(of: "~0", with: "~")] else {
                throw SchemaError("the $ref \(reference) at \(path) points nowhere")
            }
            value = next
        }
        return value
    }
}
