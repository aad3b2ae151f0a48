import Foundation
import HTTPTypes
import Hummingbird
import Logging
import RefineryCore
import RefineryHTTP
import RefineryModel
import RefineryText

/// `refinery serve`: an OpenAI-compatible HTTP API over one model — `/v1/models`, for a language
/// model `/v1/chat/completions` (through the model's chat template) and `/v1/completions`, for a
/// sentence-transformers model `/v1/embeddings`. Completions are streamed as
/// server-sent events or whole, with `usage`, sampling settings, stop strings, `n`, `logprobs`
/// and `response_format` (`json_object`, `json_schema`: enforced while decoding). Every request's
/// sequences join one `DecodeLoop` (continuous batching). Bodies over the size limit get 413, a
/// full queue 429 with `Retry-After`, a client that goes away ends its sequences.
public enum OpenAIServer {
    public struct Options: Sendable {
        public var host = "127.0.0.1"
        public var port = 8000
        /// Required beyond loopback (`REFINERY_SERVE_TOKEN`).
        public var token: String?
        public var maxRequestBytes = 4 << 20
        public var maxBatch = 16
        public var maxQueue = 64

        public init() {}
    }

    /// Refuses a non-loopback host without a token.
    public static func check(_ options: Options) throws {
        try HTTPAccess.check(host: options.host, token: options.token, variable: "REFINERY_SERVE_TOKEN", server: "refinery serve")
    }

    /// Serves an embedding model until the task is cancelled (or SIGINT/SIGTERM).
    public static func run(embeddings model: EmbeddingModel, options: Options, onRunning: @escaping @Sendable (Int) async -> Void = { _ in }) async throws {
        try check(options)
        let router = Router()
        router.add(middleware: BearerTokenMiddleware(token: options.token))
        let created = Int(Date().timeIntervalSince1970)
        router.get("v1/models") { _, _ -> Response in models(model.names, created: created) }
        router.post("v1/embeddings") { request, _ -> Response in
            var request = request
            guard let body = try? await request.collectBody(upTo: options.maxRequestBytes) else {
                return failure(APIError("the request body is over \(options.maxRequestBytes) bytes", status: 413, code: "request_too_large"))
            }
            do {
                guard let parsed = try? JSONValue.parse(String(buffer: body)) else { throw APIError("the body is not valid JSON") }
                return json(try await model.answer(parsed))
            } catch let error as APIError {
                return failure(error)
            }
        }
        try await serve(router, options: options, onRunning: onRunning)
    }

    private static func models(_ names: Set<String>, created: Int) -> Response {
        let models = names.sorted().map { name in
            JSONValue.object([("id", .string(name)), ("object", .string("model")), ("created", .int(created)), ("owned_by", .string("refinery"))])
        }
        return json(.object([("object", .string("list")), ("data", .array(models))]))
    }

    private static func serve(_ router: Router<BasicRequestContext>, options: Options, onRunning: @escaping @Sendable (Int) async -> Void) async throws {
        var logger = Logger(label: "refinery-serve")
        logger.logLevel = .warning
        let app = Application(router: router, configuration: .init(address: .hostname(options.host, port: options.port), serverName: "refinery-serve"),
                              onServerRunning: { channel in await onRunning(channel.localAddress?.port ?? options.port) }, logger: logger)
        try await app.runService()
    }

    /// Serves until the task is cancelled (or SIGINT/SIGTERM); `onRunning` receives the bound port.
    public static func run(served: ServedModel, options: Options, onRunning: @escaping @Sendable (Int) async -> Void = { _ in }) async throws {
        try check(options)
        let loop = DecodeLoop(model: served.model, maxBatch: options.maxBatch, maxQueue: options.maxQueue)
        let router = Router()
        router.add(middleware: BearerTokenMiddleware(token: options.token))
        router.get("v1/models") { _, _ -> Response in models(served.names, created: served.created) }
        router.get("health") { _, _ -> Response in
            let load = loop.load
            return json(.object([("status", .string("ok")), ("decoding", .int(load.active)), ("waiting", .int(load.waiting))]))
        }
        router.post("v1/chat/completions") { request, _ -> Response in
            try await complete(request, served: served, loop: loop, limit: options.maxRequestBytes) { try CompletionJob.chat($0, served: served) }
        }
        router.post("v1/completions") { request, _ -> Response in
            try await complete(request, served: served, loop: loop, limit: options.maxRequestBytes) { try CompletionJob.text($0, served: served) }
        }
        try await serve(router, options: options, onRunning: onRunning)
    }

    private static func complete(_ request: Request, served: ServedModel, loop: DecodeLoop, limit: Int,
                                 parse: (JSONValue) throws -> CompletionJob) async throws -> Response {
        var request = request
        let body: ByteBuffer
        do { body = try await request.collectBody(upTo: limit) } catch {
            return failure(APIError("the request body is over \(limit) bytes", status: 413, code: "request_too_large"))
        }
        let job: CompletionJob
        do {
            guard let parsed = try? JSONValue.parse(String(buffer: body)) else { throw APIError("the body is not valid JSON") }
            job = try parse(parsed)
        } catch let error as APIError {
            return failure(error)
        }
        var constraints: [JSONTokenConstraint?] = Array(repeating: nil, count: job.n)
        if case let .json(schema) = job.format {
            constraints = (0..<job.n).map { _ in JSONTokenConstraint(schema: schema, vocabulary: served.vocabulary) }
            if let needed = constraints.first??.tokensToComplete, needed > job.maxTokens {
                return failure(APIError("max_tokens \(job.maxTokens) is too small for the response format: its shortest document takes \(needed) tokens",
                                        parameter: "max_tokens"))
            }
        }
        var streams: [AsyncStream<DecodeEvent>] = []
        var requests: [DecodeRequest] = []
        for index in 0..<job.n {
            let (stream, continuation) = AsyncStream.makeStream(of: DecodeEvent.self)
            streams.append(stream)
            requests.append(DecodeRequest(prompt: job.prompt, options: job.options(choice: index, stopTokens: served.stopTokens), constraint: constraints[index],
                                          adapter: served.adapters[job.model]) { event in
                continuation.yield(event)
                switch event {
                case .finished, .failed: continuation.finish()
                case .token: break
                }
            })
        }
        guard let tickets = loop.submit(requests) else {
            var response = failure(APIError("the server is busy: \(loop.maxBatch) sequences decoding and \(loop.maxQueue) waiting; retry shortly",
                                            status: 429, code: "server_busy", type: "rate_limit_exceeded"))
            response.headers[.retryAfter] = "1"
            return response
        }
        let identity = ResponseIdentity(job: job)
        let choiceStreams = streams
        if job.stream {
            return Response(status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"],
                            body: ResponseBody { writer in
                                try await streamChoices(job: job, served: served, streams: choiceStreams, tickets: tickets, loop: loop, identity: identity, writer: &writer)
                            })
        }
        return try await withTaskCancellationHandler {
            var choices: [ChoiceResult] = []
            for (index, stream) in choiceStreams.enumerated() {
                choices.append(await collect(stream, index: index, job: job, served: served, ticket: tickets[index], loop: loop))
            }
            if let failed = choices.first(where: { $0.error != nil })?.error { return failure(APIError(failed, status: 500, type: "server_error")) }
            return json(identity.whole(choices, job: job, served: served))
        } onCancel: {
            loop.cancel(tickets)
        }
    }

    /// One choice, whole.
    struct ChoiceResult {
        var text: ChoiceText
        var finishReason: FinishReason
        var error: String?
    }

    private static func collect(_ stream: AsyncStream<DecodeEvent>, index: Int, job: CompletionJob, served: ServedModel, ticket: Int,
                                loop: DecodeLoop) async -> ChoiceResult {
        var text = ChoiceText(tokenizer: served.chat.tokenizer, stops: job.stop)
        for await event in stream {
            switch event {
            case let .token(token, logprob, top):
                _ = text.append(token, logprob: logprob, top: top)
                if text.stopped {
                    loop.cancel([ticket])
                    return ChoiceResult(text: text, finishReason: .stop)
                }
            case let .finished(reason):
                _ = text.finish()
                return ChoiceResult(text: text, finishReason: text.stopped ? .stop : reason)
            case let .failed(message):
                return ChoiceResult(text: text, finishReason: .stop, error: message)
            }
        }
        // The stream ended without a word: the request was cancelled.
        _ = text.finish()
        return ChoiceResult(text: text, finishReason: .stop)
    }

    private static func streamChoices(job: CompletionJob, served: ServedModel, streams: [AsyncStream<DecodeEvent>], tickets: [Int], loop: DecodeLoop,
                                      identity: ResponseIdentity, writer: inout any ResponseBodyWriter) async throws {
        // The choices' events, merged in arrival order.
        let (merged, sink) = AsyncStream.makeStream(of: (Int, DecodeEvent).self)
        let forwarders = Task {
            await withTaskGroup(of: Void.self) { group in
                for (index, stream) in streams.enumerated() {
                    group.addTask { for await event in stream { sink.yield((index, event)) } }
                }
            }
            sink.finish()
        }
        defer { forwarders.cancel() }
        do {
            var texts = (0..<job.n).map { _ in ChoiceText(tokenizer: served.chat.tokenizer, stops: job.stop) }
            var open = Set(0..<job.n)
            if job.kind == .chat {
                for index in 0..<job.n { try await send(identity.chunk(index: index, role: true, text: "", logprobs: [], finish: nil, job: job, served: served), &writer) }
            }
            for await (index, event) in merged where open.contains(index) {
                switch event {
                case let .token(token, logprob, top):
                    let before = texts[index].logprobs.count
                    let piece = texts[index].append(token, logprob: logprob, top: top)
                    let newLogprobs = Array(texts[index].logprobs[before...])
                    if !piece.isEmpty || !newLogprobs.isEmpty {
                        try await send(identity.chunk(index: index, role: false, text: piece, logprobs: newLogprobs, finish: nil, job: job, served: served), &writer)
                    }
                    if texts[index].stopped {
                        loop.cancel([tickets[index]])
                        open.remove(index)
                        try await send(identity.chunk(index: index, role: false, text: "", logprobs: [], finish: .stop, job: job, served: served), &writer)
                    }
                case let .finished(reason):
                    let piece = texts[index].finish()
                    open.remove(index)
                    try await send(identity.chunk(index: index, role: false, text: piece, logprobs: [], finish: texts[index].stopped ? .stop : reason,
                                                  job: job, served: served), &writer)
                case let .failed(message):
                    open.remove(index)
                    try await send(JSONValue.parse(APIError(message, status: 500, type: "server_error").body), &writer)
                }
                if open.isEmpty { break }
            }
            if job.includeUsage { try await send(identity.usageChunk(texts.map(\.tokens), job: job), &writer) }
            try await writer.write(ByteBuffer(string: "data: [DONE]\n\n"))
            try await writer.finish(nil)
        } catch {
            // The client went away (or writing failed): its sequences end now.
            loop.cancel(tickets)
            throw error
        }
    }

    private static func send(_ value: JSONValue, _ writer: inout any ResponseBodyWriter) async throws {
        try await writer.write(ByteBuffer(string: "data: " + value.compactText + "\n\n"))
    }

    static func json(_ value: JSONValue, status: HTTPResponse.Status = .ok) -> Response {
        Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: value.compactText)))
    }

    static func failure(_ error: APIError) -> Response {
        Response(status: HTTPResponse.Status(code: error.status), headers: [.contentType: "application/json"],
                 body: .init(byteBuffer: ByteBuffer(string: error.body)))
    }
}
