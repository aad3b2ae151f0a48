import Crypto
import Foundation
import RefineryCore
import RefineryText

/// One chat-completions call described completely — where it goes, which environment variable
/// holds the key, what it asks and what it costs — so it can be cached, stored, sent to a worker
/// and made there exactly as it would be made here.
public struct LLMCall: Sendable, Equatable {
    /// Base URL up to `/v1`.
    public var baseURL: String
    /// Environment variable holding the API key (the key itself never travels with the call).
    public var apiKeyEnv: String
    public var request: ChatRequest
    public var price: Price

    public init(baseURL: String, apiKeyEnv: String = "OPENAI_API_KEY", request: ChatRequest, price: Price = Price()) {
        self.baseURL = baseURL.hasSuffix("/") ? String(baseURL.dropLast()) : baseURL
        self.apiKeyEnv = apiKeyEnv
        self.request = request
        self.price = price
    }

    /// What identifies the call's answer: a SHA-256 of the endpoint and the request body (model,
    /// messages, sampling, format). The key and the prices are not part of it, so a call asked
    /// again with another key or price is answered from the cache.
    public var cacheKey: String {
        SHA256.hash(data: Data((baseURL + "\n" + request.json.compactText).utf8)).map { byte in
            let hex = String(byte, radix: 16)
            return byte < 16 ? "0" + hex : hex
        }.joined()
    }

    /// The stored form.
    public var json: JSONValue {
        .object([("base_url", .string(baseURL)), ("api_key_env", .string(apiKeyEnv)),
                 ("price_input", .double(price.inputPerMillion)), ("price_output", .double(price.outputPerMillion)),
                 ("request", request.json)])
    }

    /// Reads the stored form, checking every field.
    public init(json: JSONValue) throws(LLMCallRefusal) {
        guard let baseURL = json["base_url"]?.stringValue, !baseURL.isEmpty, baseURL.utf8.count <= 2048,
              baseURL.hasPrefix("http://") || baseURL.hasPrefix("https://") else {
            throw LLMCallRefusal("base_url is missing, too long or not an http(s) URL")
        }
        guard let keyEnv = json["api_key_env"]?.stringValue, !keyEnv.isEmpty, keyEnv.utf8.count <= 256 else {
            throw LLMCallRefusal("api_key_env is missing or too long")
        }
        let input = json["price_input"]?.doubleValue ?? 0, output = json["price_output"]?.doubleValue ?? 0
        guard input.isFinite, output.isFinite, input >= 0, output >= 0 else { throw LLMCallRefusal("prices must be finite and ≥ 0") }
        guard let body = json["request"] else { throw LLMCallRefusal("the request body is missing") }
        self.init(baseURL: baseURL, apiKeyEnv: keyEnv, request: try ChatRequest(json: body),
                  price: Price(inputPerMillion: input, outputPerMillion: output))
    }
}

/// Why a stored or received call was not accepted.
public struct LLMCallRefusal: Error, CustomStringConvertible, Sendable, Equatable {
    public let reason: String
    public init(_ reason: String) { self.reason = reason }
    public var description: String { reason }
}

extension ChatRequest {
    /// Reads a request body as `json` writes it, checking every field.
    public init(json: JSONValue) throws(LLMCallRefusal) {
        guard let model = json["model"]?.stringValue, !model.isEmpty, model.utf8.count <= 512 else {
            throw LLMCallRefusal("model is missing or too long")
        }
        guard let list = json["messages"]?.arrayValue, !list.isEmpty, list.count <= 1000 else {
            throw LLMCallRefusal("messages must be a list of 1 to 1,000 messages")
        }
        var messages: [ChatMessage] = []
        for item in list {
            guard let role = item["role"]?.stringValue, ["system", "user", "assistant"].contains(role),
                  let content = item["content"]?.stringValue else {
                throw LLMCallRefusal("every message needs a role (system, user, assistant) and a text content")
            }
            messages.append(ChatMessage(role: role, content: content))
        }
        let temperature = json["temperature"]?.doubleValue ?? 0.7
        guard temperature.isFinite, (0...10).contains(temperature) else { throw LLMCallRefusal("temperature \(temperature) is out of range") }
        let maxTokens = json["max_tokens"]?.intValue ?? 1200
        guard (1...1_000_000).contains(maxTokens) else { throw LLMCallRefusal("max_tokens \(maxTokens) is out of range") }
        let format: ResponseFormat
        switch json["response_format"]?["type"]?.stringValue {
        case nil, "text"?: format = .text
        case "json_object"?: format = .jsonObject
        case "json_schema"?:
            guard let spec = json["response_format"]?["json_schema"], let name = spec["name"]?.stringValue, let schema = spec["schema"] else {
                throw LLMCallRefusal("a json_schema response format needs a name and a schema")
            }
            format = .jsonSchema(name: name, schema: schema)
        case let other?: throw LLMCallRefusal("unknown response format \(other)")
        }
        self.init(model: model, messages: messages, temperature: temperature, maxTokens: maxTokens, responseFormat: format)
    }
}

/// How one call ended after its retries.
public struct LLMCallResult: Sendable, Equatable {
    public enum Status: String, Sendable {
        /// The endpoint answered (the content may still not be what was asked for: callers parse it).
        case answered
        /// Retryable errors until the attempts ran out.
        case failed
        /// An error that stops the run (bad key, exhausted quota, a refused request, the budget).
        case stopped
    }

    public var status: Status
    public var content: String
    public var finishReason: String?
    public var error: String?
    /// The class of the error that ended a failed or stopped call.
    public var errorClass: RequestErrorClass?
    public var promptTokens: Int
    public var completionTokens: Int
    public var cost: Double
    public var attempts: Int

    public init(status: Status, content: String = "", finishReason: String? = nil, error: String? = nil, errorClass: RequestErrorClass? = nil,
                promptTokens: Int = 0, completionTokens: Int = 0, cost: Double = 0, attempts: Int = 1) {
        self.status = status
        self.content = content
        self.finishReason = finishReason
        self.error = error
        self.errorClass = errorClass
        self.promptTokens = promptTokens
        self.completionTokens = completionTokens
        self.cost = cost
        self.attempts = attempts
    }
}

/// Makes calls through a rate limiter (at most its slots in flight, its per-minute limits), with
/// the retry policy for transport errors (429, 5xx, timeouts, dropped connections, broken bodies).
/// The API key of a call is read from its `apiKeyEnv` through `key`.
public struct LLMCallMaker: Sendable {
    public let limiter: RateLimiter
    public let retry: RetryPolicy
    public let timeout: Double
    public let key: @Sendable (String) -> String?
    /// Told of every failed attempt that will be tried again: the error, the attempt that failed
    /// (from 1) and the seconds until the next.
    public let onRetry: @Sendable (_ error: LLMError, _ attempt: Int, _ delay: Double) -> Void

    public init(limiter: RateLimiter, retry: RetryPolicy = RetryPolicy(), timeout: Double = 120,
                key: @escaping @Sendable (String) -> String? = { ProcessInfo.processInfo.environment[$0].flatMap { $0.isEmpty ? nil : $0 } },
                onRetry: @escaping @Sendable (_ error: LLMError, _ attempt: Int, _ delay: Double) -> Void = { _, _, _ in }) {
        self.limiter = limiter
        self.retry = retry
        self.timeout = timeout
        self.key = key
        self.onRetry = onRetry
    }

    /// Makes `call`, retrying what can be retried; never throws.
    public func make(_ call: LLMCall) async -> LLMCallResult {
        let client = LLMClient(endpoint: LLMEndpoint(baseURL: call.baseURL, apiKey: key(call.apiKeyEnv), timeout: timeout))
        let request = call.request
        let estimate = request.messages.map(\.content.count).reduce(0, +) / 4 + request.maxTokens
        let maxCost = call.price.cost(promptTokens: estimate - request.maxTokens, completionTokens: request.maxTokens)
        var attempts = 0
        while true {
            attempts += 1
            do {
                try await limiter.acquire(estimatedTokens: estimate, maxCost: maxCost)
            } catch {
                return LLMCallResult(status: .stopped, error: error.description, errorClass: error.errorClass, attempts: attempts)
            }
            do {
                let reply = try await client.complete(request)
                let cost = call.price.cost(promptTokens: reply.promptTokens, completionTokens: reply.completionTokens)
                await limiter.release(maxCost: maxCost, actualCost: cost)
                return LLMCallResult(status: .answered, content: reply.content, finishReason: reply.finishReason,
                                     promptTokens: reply.promptTokens, completionTokens: reply.completionTokens, cost: cost, attempts: attempts)
            } catch {
                await limiter.release(maxCost: maxCost, actualCost: 0)
                // The caller gave up on the call (another call stopped the run): no retry, nothing to tell.
                if Task.isCancelled {
                    return LLMCallResult(status: .stopped, error: "cancelled", errorClass: error.errorClass, attempts: attempts)
                }
                guard error.isRetryable else {
                    return LLMCallResult(status: .stopped, error: error.description, errorClass: error.errorClass, attempts: attempts)
                }
                if attempts >= retry.maxAttempts {
                    return LLMCallResult(status: .failed, error: "\(attempts) attempts failed, the last with: \(error.description)", errorClass: error.errorClass,
                                         attempts: attempts)
                }
                let delay = retry.delay(afterAttempt: attempts, error: error)
                onRetry(error, attempts, delay)
                try? await Task.sleep(nanoseconds: UInt64(delay * 1e9))
            }
        }
    }
}
