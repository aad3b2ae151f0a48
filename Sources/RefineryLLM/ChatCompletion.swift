import Foundation
import RefineryCore
import RefineryText

/// How the reply must be shaped (OpenAI `response_format`).
public enum ResponseFormat: Sendable, Equatable {
    case text
    case jsonObject
    /// A JSON schema with a name, enforced by servers that support structured outputs.
    case jsonSchema(name: String, schema: JSONValue)
}

/// A chat-completions request.
public struct ChatRequest: Sendable, Equatable {
    public var model: String
    public var messages: [ChatMessage]
    public var temperature: Double
    public var maxTokens: Int
    public var responseFormat: ResponseFormat

    public init(model: String, messages: [ChatMessage], temperature: Double = 0.7, maxTokens: Int = 1200, responseFormat: ResponseFormat = .jsonObject) {
        self.model = model
        self.messages = messages
        self.temperature = temperature
        self.maxTokens = maxTokens
        self.responseFormat = responseFormat
    }

    /// The request body.
    public var json: JSONValue {
        var fields: [(String, JSONValue)] = [
            ("model", .string(model)),
            ("messages", .array(messages.map { .object([("role", .string($0.role)), ("content", .string($0.content))]) })),
            ("temperature", .double(temperature)),
            ("max_tokens", .int(maxTokens)),
        ]
        switch responseFormat {
        case .text: break
        case .jsonObject: fields.append(("response_format", .object([("type", .string("json_object"))])))
        case let .jsonSchema(name, schema):
            fields.append(("response_format", .object([
                ("type", .string("json_schema")),
                ("json_schema", .object([("name", .string(name)), ("schema", schema), ("strict", .bool(true))])),
            ])))
        }
        return .object(fields)
    }

    /// A stable hash of what is asked (model, messages, sampling, format): the same prompt twice has the same hash.
    public var promptHash: String { StableHash.hex(json.compactText) }
}

/// The useful parts of a chat-completions reply.
public struct ChatReply: Sendable, Equatable {
    public var content: String
    public var finishReason: String?
    public var promptTokens: Int
    public var completionTokens: Int
    /// The whole body as received.
    public var raw: String
}

