import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import RefineryCore
import RefineryLLM

/// Knobs of the dry-run server: latency and the share of each kind of fault.
public struct MockLLMOptions: Sendable {
    public var latency: Double = 0
    public var jitter: Double = 0
    public var rateLimitShare: Double = 0
    public var serverErrorShare: Double = 0
    public var malformedShare: Double = 0
    public var hangShare: Double = 0
    public var hangSeconds: Double = 600
    /// Share answered with a cut-off reply and `finish_reason: length` when max_tokens is below 2000.
    public var lengthShare: Double = 0
    /// Requests beyond this many in flight get 429 (nil: no limit).
    public var maxConcurrent: Int?
    /// When set, requests must carry `Authorization: Bearer <key>`.
    public var requiredKey: String?
    /// Every chat completion answers 429 insufficient_quota.
    public var quotaExhausted = false
    public var seed: UInt64 = 1
    public var model = "mock-model"
    /// Pairs per reply.
    public var pairs = 5
    /// Pairwise judging always prefers the answer in the first position (a position-biased judge).
    public var judgePrefersFirst = false

    public init() {}
}

/// What the dry-run server saw.
public actor MockLLMState {
    public private(set) var requests = 0
    public private(set) var byOutcome: [String: Int] = [:]
    public private(set) var inFlight = 0
    public private(set) var maxInFlight = 0
    /// Prompts (by `StableHash.hex` of their extract) answered with a valid reply, and how often.
    public private(set) var answered: [String: Int] = [:]
    /// `/v1/embeddings` requests answered and the texts they embedded, by `StableHash.hex` of the text.
    public private(set) var embeddingRequests = 0
    public private(set) var embedded: [String: Int] = [:]
    private var counter: UInt64 = 0
    let seed: UInt64

    public init(seed: UInt64) { self.seed = seed }

    func begin() -> (Int, Double) {
        requests += 1
        inFlight += 1
        maxInFlight = max(maxInFlight, inFlight)
        counter += 1
        var z = (seed &+ counter &* 0x9E37_79B9_7F4A_7C15)
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        z ^= z >> 31
        return (inFlight, Double(z >> 11) / Double(1 << 53))
    }

    func end(_ outcome: String, promptHash: String?) {
        inFlight -= 1
        byOutcome[outcome, default: 0] += 1
        if let promptHash { answered[promptHash, default: 0] += 1 }
    }

    func embedded(_ texts: [String]) {
        embeddingRequests += 1
        for text in texts { embedded[StableHash.hex(text), default: 0] += 1 }
    }

    /// Prompts answered more than once.
    public var repeatedAnswers: Int { answered.values.filter { $0 > 1 }.count }

    public var statsJSON: JSONValue {
        .object([
            ("requests", .int(requests)),
            ("outcomes", .object(byOutcome.sorted { $0.key < $1.key }.map { ($0.key, .int($0.value)) })),
            ("max_in_flight", .int(maxInFlight)),
            ("prompts_answered", .int(answered.count)),
            ("prompts_answered_more_than_once", .int(repeatedAnswers)),
            ("answered", .object(answered.sorted { $0.key < $1.key }.map { ($0.key, .int($0.value)) })),
            ("embedding_requests", .int(embeddingRequests)),
            ("texts_embedded", .int(embedded.count)),
            ("texts_embedded_more_than_once", .int(embedded.values.filter { $0 > 1 }.count)),
        ])
    }
}

/// An OpenAI-compatible dry-run server: chat completions that return valid instruction–answer
/// pairs built from the extract in the prompt, deterministic embeddings, `/v1/models`, fault
/// injection, and `/stats`.
public enum MockLLMServer {
    /// Starts a server on a free loopback port in a task of its own; returns its base URL (up to
    /// `/v1`), its state and the task (cancel it to stop the server).
    public static func start(_ options: MockLLMOptions) async throws -> (baseURL: String, state: MockLLMState, task: Task<Void, Error>) {
        let state = MockLLMState(seed: options.seed)
        let (ports, sink) = AsyncStream.makeStream(of: Int.self)
        let task = Task { try await run(port: 0, options: options, state: state, quiet: true) { sink.yield($0) } }
        var iterator = ports.makeAsyncIterator()
        guard let port = await iterator.next() else {
            task.cancel()
            throw CancellationError()
        }
        return ("http://127.0.0.1:\(port)/v1", state, task)
    }

    /// Runs until the task is cancelled; `onRunning` receives the bound port (useful with port 0).
    /// `quiet` silences the server's own log lines (tests start and stop many servers).
    public static func run(host: String = "127.0.0.1", port: Int, options: MockLLMOptions, state: MockLLMState, quiet: Bool = false,
                           onRunning: @escaping @Sendable (Int) async -> Void = { _ in }) async throws {
        let router = Router()
        router.get("v1/models") { _, _ in
            json(.object([("object", .string("list")), ("data", .array([.object([("id", .string(options.model)), ("object", .string("model"))])]))]))
        }
        router.get("stats") { _, _ in json(await state.statsJSON) }
        router.post("v1/embeddings") { request, _ in
            var request = request
            let body = try await request.collectBody(upTo: 16 << 20)
            guard let parsed = try? JSONValue.parse(String(buffer: body)) else { return error(400, "invalid JSON body", type: "invalid_request_error") }
            let inputs: [String] = parsed["input"]?.stringValue.map { [$0] } ?? parsed["input"]?.arrayValue?.compactMap(\.stringValue) ?? []
            if let key = options.requiredKey, request.headers[.authorization] != "Bearer \(key)" {
                return error(401, "Incorrect API key provided.", type: "invalid_request_error", code: "invalid_api_key")
            }
            if options.latency > 0 { try await Task.sleep(nanoseconds: UInt64(options.latency * 1e9)) }
            await state.embedded(inputs)
            let data = inputs.enumerated().map { index, text in
                JSONValue.object([("object", .string("embedding")), ("index", .int(index)), ("embedding", .array(embedding(text).map { .double(Double($0)) }))])
            }
            return json(.object([("object", .string("list")), ("data", .array(data)), ("model", .string(options.model)),
                                 ("usage", .object([("prompt_tokens", .int(inputs.map { $0.count / 4 }.reduce(0, +))), ("total_tokens", .int(0))]))]))
        }
        router.post("v1/chat/completions") { request, _ in
            var request = request
            let (inFlight, roll) = await state.begin()
            if let key = options.requiredKey, request.headers[.authorization] != "Bearer \(key)" {
                await state.end("401", promptHash: nil)
                return error(401, "Incorrect API key provided.", type: "invalid_request_error", code: "invalid_api_key")
            }
            if options.quotaExhausted {
                await state.end("429-quota", promptHash: nil)
                return error(429, "You exceeded your current quota, please check your plan and billing details.", type: "insufficient_quota", code: "insufficient_quota")
            }
            if let limit = options.maxConcurrent, inFlight > limit {
                await state.end("429-concurrency", promptHash: nil)
                return error(429, "Too many concurrent requests.", type: "rate_limit_exceeded", retryAfter: "0.2")
            }
            let body = try await request.collectBody(upTo: 16 << 20)
            let delay = options.latency + (options.jitter > 0 ? Double.random(in: 0...options.jitter) : 0)
            if delay > 0 { try await Task.sleep(nanoseconds: UInt64(delay * 1e9)) }
            var threshold = options.rateLimitShare
            if roll < threshold {
                await state.end("429", promptHash: nil)
                return error(429, "Rate limit reached.", type: "rate_limit_exceeded", retryAfter: "0.1")
            }
            threshold += options.serverErrorShare
            if roll < threshold {
                await state.end("500", promptHash: nil)
                return error(500, "The server had an error while processing your request.", type: "server_error")
            }
            guard let parsed = try? JSONValue.parse(String(buffer: body)) else {
                await state.end("400", promptHash: nil)
                return error(400, "We could not parse the JSON body of your request.", type: "invalid_request_error")
            }
            let messages = parsed["messages"]?.arrayValue ?? []
            let userText = messages.last(where: { $0["role"]?.stringValue == "user" })?["content"]?.stringValue ?? ""
            let firstUser = messages.first(where: { $0["role"]?.stringValue == "user" })?["content"]?.stringValue ?? ""
            let model = parsed["model"]?.stringValue ?? options.model
            // Generation prompts are known by their extract; any other by the model and the whole conversation.
            let promptHash = userText.contains("Extract:") ? StableHash.hex(extract(of: userText))
                : StableHash.hex(model + "\n" + (parsed["messages"]?.compactText ?? ""))
            threshold += options.malformedShare
            if roll < threshold {
                await state.end("malformed", promptHash: nil)
                return completion(content: "{\"instruction_answer_pairs\": [{\"instruction\": \"truncated", model: options.model, promptChars: userText.count)
            }
            threshold += options.hangShare
            if roll < threshold {
                try await Task.sleep(nanoseconds: UInt64(options.hangSeconds * 1e9))
                await state.end("hang", promptHash: nil)
                return error(504, "timeout", type: "server_error")
            }
            let system = messages.first(where: { $0["role"]?.stringValue == "system" })?["content"]?.stringValue ?? ""
            let content = MockCurationReplies.reply(system: system, user: firstUser, model: model, prefersFirst: options.judgePrefersFirst)
                ?? pairs(fromExtract: extract(of: userText), count: options.pairs).compactText
            threshold += options.lengthShare
            if roll < threshold, (parsed["max_tokens"]?.intValue ?? 0) < 2000 {
                await state.end("length", promptHash: nil)
                return completion(content: String(content.prefix(content.count / 2)), model: options.model, promptChars: userText.count, finishReason: "length")
            }
            await state.end("200", promptHash: promptHash)
            return completion(content: content, model: options.model, promptChars: userText.count)
        }
        var logger = Logger(label: "refinery-mock-llm")
        logger.logLevel = quiet ? .critical : .info
        let app = Application(router: router, configuration: .init(address: .hostname(host, port: port), serverName: "refinery-mock-llm"),
                              onServerRunning: { channel in await onRunning(channel.localAddress?.port ?? port) }, logger: logger)
        try await app.runService()
    }

    /// The text after the last "Extract:" line of a prompt (the whole prompt if there is none).
    public static func extract(of prompt: String) -> String {
        guard let range = prompt.range(of: "Extract:", options: .backwards) else { return prompt }
        return prompt[range.upperBound...].trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// `count` pairs made from the extract's sentences, deterministic.
    public static func pairs(fromExtract extract: String, count: Int = 5) -> JSONValue {
        let sentences = extract.split(whereSeparator: { ".!?".contains($0) }).map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        let pool = sentences.isEmpty ? [extract.isEmpty ? "the topic" : extract] : sentences
        let items: [JSONValue] = (0..<count).map { i in
            let sentence = pool[i % pool.count]
            let topic = sentence.split(separator: " ").prefix(6).joined(separator: " ")
            return .object([("instruction", .string("Write a short paragraph about \(topic.lowercased()).")),
                            ("answer", .string(sentence + "."))])
        }
        return .object([("instruction_answer_pairs", .array(items))])
    }

    /// A deterministic unit vector of 64 dimensions for `text`.
    public static func embedding(_ text: String) -> [Float] {
        var state = StableHash.value(text)
        var vector = (0..<64).map { _ -> Float in
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Float(Int64(bitPattern: state >> 11) % 2000 - 1000) / 1000
        }
        let norm = vector.map { $0 * $0 }.reduce(0, +).squareRoot()
        if norm > 0 { vector = vector.map { $0 / norm } }
        return vector
    }

    static func json(_ value: JSONValue, status: HTTPResponse.Status = .ok, extra: HTTPFields = [:]) -> Response {
        var headers: HTTPFields = [.contentType: "application/json"]
        headers.append(contentsOf: extra)
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(string: value.compactText)))
    }

    static func error(_ status: Int, _ message: String, type: String, code: String? = nil, retryAfter: String? = nil) -> Response {
        var extra: HTTPFields = [:]
        if let retryAfter, let name = HTTPField.Name("Retry-After") { extra[name] = retryAfter }
        let body = JSONValue.object([("error", .object([("message", .string(message)), ("type", .string(type)),
                                                        ("code", code.map { .string($0) } ?? .null)]))])
        return json(body, status: HTTPResponse.Status(code: status), extra: extra)
    }

    static func completion(content: String, model: String, promptChars: Int, finishReason: String = "stop") -> Response {
        let completionTokens = max(1, content.count / 4), promptTokens = max(1, promptChars / 4)
        return json(.object([
            ("id", .string("chatcmpl-mock")), ("object", .string("chat.completion")), ("model", .string(model)),
            ("choices", .array([.object([("index", .int(0)), ("message", .object([("role", .string("assistant")), ("content", .string(content))])),
                                         ("finish_reason", .string(finishReason))])])),
            ("usage", .object([("prompt_tokens", .int(promptTokens)), ("completion_tokens", .int(completionTokens)),
                               ("total_tokens", .int(promptTokens + completionTokens))])),
        ]))
    }
}
