import Foundation
import RefineryLLM
import RefineryStore

/// Where a chunk's requests and outcome are written: the run store on one machine, an
/// in-memory record on a cluster worker (the coordinator commits it).
public protocol ChunkLedger: Sendable {
    /// Records that a request is about to be sent; returns its id.
    func beginRequest(chunkID: Int64, promptHash: String) throws -> Int64
    /// Records a request that did not yield samples, and the class of what went wrong.
    func failRequest(_ requestID: Int64, error: String, errorClass: RequestErrorClass, rawReply: String?, usage: Usage) throws
    /// Stores the pairs and marks the request and the chunk done.
    func completeChunk(_ chunkID: Int64, requestID: Int64, rawReply: String, usage: Usage, pairs: [(String, String)]) throws
    /// Gives the chunk up, keeping the reason and the last raw reply.
    func failChunk(_ chunkID: Int64, reason: String, rawReply: String?) throws
}

extension RunStore: ChunkLedger {
    public func failRequest(_ requestID: Int64, error: String, errorClass: RequestErrorClass, rawReply: String?, usage: Usage) throws {
        try failRequest(requestID, error: error, errorClass: errorClass.rawValue, rawReply: rawReply, usage: usage)
    }
}

/// How a chunk ended.
public enum ChunkOutcome: Sendable, Equatable {
    case done, failed
}

/// Takes one chunk to the end: builds the back-translation request, calls the LLM through the
/// limiter, retries transport failures with backoff, grows `max_tokens` once on
/// `finish_reason: length`, validates the reply and retries invalid ones, and writes every
/// request and the outcome to a ledger. Run-stopping errors are thrown as `GenerationStopped`.
public struct ChunkProcessor: Sendable {
    public let client: LLMClient
    public let limiter: RateLimiter
    public let settings: GenerationSettings

    public init(client: LLMClient, limiter: RateLimiter, settings: GenerationSettings) {
        self.client = client
        self.limiter = limiter
        self.settings = settings
    }

    public func process(chunkID: Int64, text: String, ledger: any ChunkLedger,
                        onRequest: @Sendable () async -> Void = {}) async throws -> ChunkOutcome {
        var request = ChatRequest(model: settings.model, messages: settings.prompt.messages(extract: text),
                                  temperature: settings.temperature, maxTokens: settings.maxTokens, responseFormat: settings.responseFormat)
        if case .jsonSchema = settings.responseFormat {
            request.responseFormat = .jsonSchema(name: "instruction_answer_pairs", schema: settings.prompt.schema)
        }
        var invalidReplies = 0
        var transportFailures = 0
        var grewForLength = false
        var lastRaw: String? = nil
        while true {
            let requestID = try ledger.beginRequest(chunkID: chunkID, promptHash: request.promptHash)
            let estimate = (request.messages.map(\.content.count).reduce(0, +)) / 4 + request.maxTokens
            let maxCost = settings.price.cost(promptTokens: estimate - request.maxTokens, completionTokens: request.maxTokens)
            await onRequest()
            let reply: ChatReply
            do {
                try await limiter.acquire(estimatedTokens: estimate, maxCost: maxCost)
                do {
                    reply = try await client.complete(request)
                } catch {
                    await limiter.release(maxCost: maxCost, actualCost: 0)
                    throw error
                }
            } catch let error as LLMError {
                try ledger.failRequest(requestID, error: error.description, errorClass: error.errorClass, rawReply: nil, usage: Usage())
                guard error.isRetryable else { throw GenerationStopped(error: error) }
                transportFailures += 1
                if transportFailures >= settings.retry.maxAttempts {
                    try ledger.failChunk(chunkID, reason: "\(transportFailures) attempts failed, the last with: \(error.description)", rawReply: lastRaw)
                    return .failed
                }
                try await Task.sleep(nanoseconds: UInt64(settings.retry.delay(afterAttempt: transportFailures, error: error) * 1e9))
                continue
            }
            let usage = Usage(promptTokens: reply.promptTokens, completionTokens: reply.completionTokens,
                              cost: settings.price.cost(promptTokens: reply.promptTokens, completionTokens: reply.completionTokens))
            await limiter.release(maxCost: maxCost, actualCost: usage.cost)
            lastRaw = reply.content
            if reply.finishReason == "length" && !grewForLength {
                grewForLength = true
                try ledger.failRequest(requestID, error: "finish_reason length: retrying once with max_tokens \(request.maxTokens * 2)",
                                       errorClass: .truncated, rawReply: reply.content, usage: usage)
                request.maxTokens *= 2
                continue
            }
            switch settings.prompt.parse(reply.content) {
            case let .success(pairs):
                try ledger.completeChunk(chunkID, requestID: requestID, rawReply: reply.content, usage: usage, pairs: pairs)
                return .done
            case let .failure(problem):
                try ledger.failRequest(requestID, error: problem.reason, errorClass: .invalidReply, rawReply: reply.content, usage: usage)
                invalidReplies += 1
                if invalidReplies >= settings.maxInvalidReplies {
                    try ledger.failChunk(chunkID, reason: "\(problem.reason) (\(invalidReplies) invalid replies)", rawReply: reply.content)
                    return .failed
                }
            }
        }
    }
}
