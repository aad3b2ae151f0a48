import Foundation
import RefineryCore
import RefineryModel
import RefineryText

/// A request the API refuses: 400 (or `status`) with OpenAI's error shape, naming the field.
public struct APIError: Error, Sendable {
    public var status: Int
    public var message: String
    public var parameter: String?
    public var code: String?
    public var type: String

    public init(_ message: String, parameter: String? = nil, status: Int = 400, code: String? = nil, type: String = "invalid_request_error") {
        self.message = message
        self.parameter = parameter
        self.status = status
        self.code = code
        self.type = type
    }

    /// `{"error": {"message", "type", "param", "code"}}`.
    public var body: String {
        JSONValue.object([("error", .object([("message", .string(message)), ("type", .string(type)),
                                             ("param", parameter.map { .string($0) } ?? .null), ("code", code.map { .string($0) } ?? .null)]))]).compactText
    }
}

/// What the output must be.
public enum ResponseFormat: Sendable, Equatable {
    case text
    case json(JSONSchemaNode)
}

/// A chat or text completion request, checked: the prompt's tokens and everything that decides
/// the choices.
public struct CompletionJob: Sendable {
    public enum Kind: Sendable { case chat, text }

    public var kind: Kind
    public var model: String
    public var prompt: [Int]
    public var maxTokens: Int
    public var temperature: Float
    public var topP: Float
    public var topK: Int
    public var seed: UInt64?
    public var stop: [String]
    public var n: Int
    public var stream: Bool
    public var includeUsage: Bool
    /// nil: no logprobs; else how many alternatives per token.
    public var logprobs: Int?
    /// `ignore_eos` (an extension, as in vLLM): decode `max_tokens` whatever the model says — for benchmarks.
    public var ignoreEOS = false
    public var format: ResponseFormat

    /// Reads a `/v1/chat/completions` body.
    public static func chat(_ body: JSONValue, served: ServedModel) throws -> CompletionJob {
        var job = try common(body, served: served, kind: .chat, defaultMaxTokens: nil)
        guard let messages = body["messages"]?.arrayValue, !messages.isEmpty else { throw APIError("messages must be a non-empty array", parameter: "messages") }
        let chat = try messages.enumerated().map { index, message -> ChatMessage in
            guard let role = message["role"]?.stringValue, ["system", "user", "assistant", "developer", "tool"].contains(role) else {
                throw APIError("messages[\(index)].role must be system, user, assistant or developer", parameter: "messages[\(index)].role")
            }
            return ChatMessage(role: role == "developer" ? "system" : role, content: try text(of: message["content"], at: "messages[\(index)].content"))
        }
        let rendered: String
        do { rendered = try served.chat.render(chat, addGenerationPrompt: true) } catch {
            throw APIError("the model's chat template failed on these messages: \(error)", parameter: "messages")
        }
        job.prompt = served.chat.tokenizer.encode(rendered, addSpecialTokens: false).ids
        if body["logprobs"]?.boolValue == true {
            let top = body["top_logprobs"]?.intValue ?? 0
            guard (0...20).contains(top) else { throw APIError("top_logprobs must be between 0 and 20", parameter: "top_logprobs") }
            job.logprobs = top
        }
        if let format = body["response_format"] { job.format = try responseFormat(format) }
        try job.checkLength(served)
        return job
    }

    /// Reads a `/v1/completions` body.
    public static func text(_ body: JSONValue, served: ServedModel) throws -> CompletionJob {
        var job = try common(body, served: served, kind: .text, defaultMaxTokens: 16)
        if let single = body["prompt"]?.stringValue {
            job.prompt = served.chat.tokenizer.encode(single, addSpecialTokens: true).ids
        } else if let list = body["prompt"]?.arrayValue, list.count == 1, let single = list[0].stringValue {
            job.prompt = served.chat.tokenizer.encode(single, addSpecialTokens: true).ids
        } else if let ids = body["prompt"]?.arrayValue, !ids.isEmpty, ids.allSatisfy({ $0.intValue != nil }) {
            // Token ids, as the OpenAI API also takes them.
            job.prompt = ids.compactMap(\.intValue)
            guard job.prompt.allSatisfy({ (0..<served.model.config.vocabSize).contains($0) }) else {
                throw APIError("prompt holds token ids outside the vocabulary (0..<\(served.model.config.vocabSize))", parameter: "prompt")
            }
        } else {
            throw APIError("prompt must be a string, a list of one string, or a list of token ids", parameter: "prompt")
        }
        if let logprobs = body["logprobs"], logprobs != .null {
            guard let count = logprobs.intValue, (0...5).contains(count) else { throw APIError("logprobs must be between 0 and 5", parameter: "logprobs") }
            job.logprobs = count
        }
        if let format = body["response_format"] { job.format = try responseFormat(format) }
        try job.checkLength(served)
        return job
    }

    private static func common(_ body: JSONValue, served: ServedModel, kind: Kind, defaultMaxTokens: Int?) throws -> CompletionJob {
        guard case .object = body else { throw APIError("the body must be a JSON object") }
        guard let model = body["model"]?.stringValue else { throw APIError("model is required", parameter: "model") }
        guard served.names.contains(model) else {
            throw APIError("the model \(model) is not served here; GET /v1/models lists \(served.names.sorted().joined(separator: ", "))",
                           parameter: "model", status: 404, code: "model_not_found")
        }
        func number(_ key: String, _ range: ClosedRange<Double>, default value: Double) throws -> Double {
            guard let field = body[key], field != .null else { return value }
            guard let number = field.doubleValue, range.contains(number) else {
                throw APIError("\(key) must be a number between \(range.lowerBound) and \(range.upperBound)", parameter: key)
            }
            return number
        }
        let room = served.contextLength
        var maxTokens = defaultMaxTokens ?? room
        for key in ["max_completion_tokens", "max_tokens"] {
            guard let field = body[key], field != .null else { continue }
            guard let value = field.intValue, value >= 1 else { throw APIError("\(key) must be a whole number ≥ 1", parameter: key) }
            maxTokens = value
            break
        }
        let n = body["n"].flatMap { $0 == .null ? nil : $0 }
        guard n == nil || (n?.intValue.map { (1...16).contains($0) } ?? false) else { throw APIError("n must be between 1 and 16", parameter: "n") }
        var stop: [String] = []
        if let field = body["stop"], field != .null {
            if let single = field.stringValue { stop = [single] } else if let list = field.arrayValue, list.allSatisfy({ $0.stringValue != nil }) {
                stop = list.compactMap(\.stringValue)
            } else {
                throw APIError("stop must be a string or a list of up to 4 strings", parameter: "stop")
            }
            guard stop.count <= 4, stop.allSatisfy({ !$0.isEmpty }) else { throw APIError("stop must hold 1 to 4 non-empty strings", parameter: "stop") }
        }
        var seed: UInt64?
        if let field = body["seed"], field != .null {
            guard let value = field.intValue else { throw APIError("seed must be a whole number", parameter: "seed") }
            seed = UInt64(bitPattern: Int64(value))
        }
        let topK = body["top_k"]?.intValue ?? 0
        guard topK >= 0 else { throw APIError("top_k must be ≥ 0", parameter: "top_k") }
        let stream = body["stream"]?.boolValue ?? false
        return CompletionJob(kind: kind, model: model, prompt: [], maxTokens: maxTokens,
                             temperature: Float(try number("temperature", 0...2, default: 1)), topP: Float(try number("top_p", 0.000_001...1, default: 1)),
                             topK: topK, seed: seed, stop: stop, n: n?.intValue ?? 1, stream: stream,
                             includeUsage: body["stream_options"]?["include_usage"]?.boolValue ?? false, logprobs: nil,
                             ignoreEOS: body["ignore_eos"]?.boolValue ?? false, format: .text)
    }

    private static func text(of content: JSONValue?, at path: String) throws -> String {
        if let text = content?.stringValue { return text }
        if content == nil || content == .null { return "" }
        guard let parts = content?.arrayValue else { throw APIError("\(path) must be a string or a list of text parts", parameter: path) }
        return try parts.enumerated().map { index, part in
            guard part["type"]?.stringValue == "text", let text = part["text"]?.stringValue else {
                throw APIError("\(path)[\(index)] is not a text part; this model reads text only", parameter: path)
            }
            return text
        }.joined()
    }

    private static func responseFormat(_ format: JSONValue) throws -> ResponseFormat {
        if format == .null { return .text }
        switch format["type"]?.stringValue {
        case "text": return .text
        case "json_object": return .json(.anyObject)
        case "json_schema":
            guard let schema = format["json_schema"]?["schema"] else {
                throw APIError("response_format.json_schema.schema is required", parameter: "response_format.json_schema.schema")
            }
            do { return .json(try JSONSchemaNode.compile(schema)) } catch {
                throw APIError("response_format.json_schema.schema: \(error)", parameter: "response_format.json_schema.schema")
            }
        default:
            throw APIError("response_format.type must be text, json_object or json_schema", parameter: "response_format.type")
        }
    }

    /// The prompt and the answer must fit in the model's context.
    private mutating func checkLength(_ served: ServedModel) throws {
        guard !prompt.isEmpty else { throw APIError("the prompt encodes to no tokens", parameter: kind == .chat ? "messages" : "prompt") }
        let room = served.contextLength - prompt.count
        guard room >= 1 else {
            throw APIError("the prompt takes \(prompt.count) tokens, and the model's context is \(served.contextLength)",
                           parameter: kind == .chat ? "messages" : "prompt", code: "context_length_exceeded")
        }
        maxTokens = min(maxTokens, room)
    }

    /// The sampling options of choice `index`.
    public func options(choice index: Int, stopTokens: Set<Int>) -> SamplingOptions {
        SamplingOptions(maxNewTokens: maxTokens, temperature: temperature, topP: topP, topK: topK,
                        seed: (seed ?? UInt64.random(in: 0...UInt64.max)) &+ UInt64(index), stopTokens: ignoreEOS ? [] : stopTokens, logprobs: logprobs)
    }
}
