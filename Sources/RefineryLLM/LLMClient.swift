import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import RefineryCore
import RefineryText

/// Where to send chat completions. The key is held in memory only.
public struct LLMEndpoint: Sendable {
    /// Base URL up to and including `/v1`, e.g. `https://api.openai.com/v1` or `http://127.0.0.1:8000/v1`.
    public var baseURL: String
    public var apiKey: String?
    public var timeout: Double

    public init(baseURL: String, apiKey: String?, timeout: Double = 120) {
        self.baseURL = baseURL.hasSuffix("/") ? String(baseURL.dropLast()) : baseURL
        self.apiKey = apiKey
        self.timeout = timeout
    }
}

/// One chat-completions call over HTTP (AsyncHTTPClient), with errors classified. No retries
/// here: `RetryPolicy` decides.
public struct LLMClient: Sendable {
    public let endpoint: LLMEndpoint

    public init(endpoint: LLMEndpoint) { self.endpoint = endpoint }

    public func complete(_ chat: ChatRequest) async throws(LLMError) -> ChatReply {
        try Self.parse(try await post("/chat/completions", body: chat.json))
    }

    /// The vectors of `inputs` from the endpoint's `/embeddings` (OpenAI's shape: `data[i].embedding`
    /// with its `index`), in the order of `inputs`.
    public func embed(_ inputs: [String], model: String) async throws(LLMError) -> EmbeddingReply {
        let body = JSONValue.object([("model", .string(model)), ("input", .array(inputs.map { .string($0) })),
                                     ("encoding_format", .string("float"))])
        return try EmbeddingReply.parse(try await post("/embeddings", body: body), count: inputs.count)
    }

    /// POSTs `body` to `path` under the base URL; the reply's body on a 2xx, else the classified error.
    private func post(_ path: String, body: JSONValue) async throws(LLMError) -> String {
        var request = HTTPClientRequest(url: endpoint.baseURL + path)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        if let key = endpoint.apiKey { request.headers.add(name: "Authorization", value: "Bearer \(key)") }
        request.body = .bytes(ByteBuffer(string: body.compactText))
        let status: Int
        let headers: HTTPHeaders
        let text: String
        do {
            let response = try await llmHTTPClient.execute(request, timeout: .milliseconds(Int64(endpoint.timeout * 1000)))
            status = Int(response.status.code)
            headers = response.headers
            let buffer = try await response.body.collect(upTo: 64 << 20)
            text = String(buffer: buffer)
        } catch let error as HTTPClientError where error == .deadlineExceeded || error == .readTimeout || error == .connectTimeout {
            throw .timeout
        } catch {
            throw .connection(Self.redact(Self.describeConnectionFailure(error, baseURL: endpoint.baseURL), key: endpoint.apiKey))
        }
        guard (200..<300).contains(status) else {
            throw Self.classify(status: status, headers: headers, body: Self.redact(text, key: endpoint.apiKey))
        }
        return text
    }

    /// "cannot reach URL: Connection refused (errno 111)" for a socket error; the error's own
    /// description otherwise.
    static func describeConnectionFailure(_ error: any Error, baseURL: String) -> String {
        if let io = error as? IOError {
            return "cannot reach \(baseURL): \(String(cString: strerror(io.errnoCode))) (errno \(io.errnoCode)); is the server running, and is --base-url right?"
        }
        return "\(baseURL): \(String(describing: error))"
    }

    static func redact(_ text: String, key: String?) -> String {
        guard let key, !key.isEmpty else { return text }
        return text.replacingOccurrences(of: key, with: "[redacted]")
    }

    static func errorMessage(_ body: String) -> (message: String, code: String?, type: String?) {
        guard let json = try? JSONValue.parse(body) else { return (String(body.prefix(200)), nil, nil) }
        let error = json["error"]
        return (error?["message"]?.stringValue ?? String(body.prefix(200)), error?["code"]?.stringValue, error?["type"]?.stringValue)
    }

    /// Maps an HTTP error reply to an `LLMError`.
    static func classify(status: Int, headers: HTTPHeaders, body: String) -> LLMError {
        let (message, code, type) = errorMessage(body)
        switch status {
        case 401, 403:
            return .authentication(message)
        case 429:
            if code == "insufficient_quota" || type == "insufficient_quota" || message.lowercased().contains("quota") {
                return .quotaExhausted(message)
            }
            let retryAfter = headers.first(name: "retry-after").flatMap(Double.init)
                ?? headers.first(name: "retry-after-ms").flatMap(Double.init).map { $0 / 1000 }
            return .rateLimited(retryAfter: retryAfter)
        case 500...599:
            return .server(status: status, message: message)
        case 408:
            return .timeout
        default:
            return .badRequest(status: status, message: message)
        }
    }

    /// Parses a chat-completions body.
    static func parse(_ body: String) throws(LLMError) -> ChatReply {
        guard let json = try? JSONValue.parse(body) else { throw .malformedResponse("the body is not JSON: \(body.prefix(120))") }
        guard let choice = json["choices"]?.arrayValue?.first, let content = choice["message"]?["content"]?.stringValue else {
            throw .malformedResponse("no choices[0].message.content in \(body.prefix(120))")
        }
        return ChatReply(content: content, finishReason: choice["finish_reason"]?.stringValue,
                         promptTokens: json["usage"]?["prompt_tokens"]?.intValue ?? 0,
                         completionTokens: json["usage"]?["completion_tokens"]?.intValue ?? 0, raw: body)
    }
}
