import Foundation
import RefineryLLM
import RefineryStore
import RefineryText

/// Settings of a generation run.
public struct GenerationSettings: Sendable {
    public var model: String
    public var prompt = GenerationPrompt()
    public var temperature: Double = 0.7
    public var maxTokens = 1200
    public var responseFormat: ResponseFormat = .jsonObject
    /// Invalid replies (bad JSON, wrong shape, wrong number of pairs) tolerated per chunk before it fails.
    public var maxInvalidReplies = 3
    public var retry = RetryPolicy()
    public var price = Price()

    public init(model: String) { self.model = model }
}

/// Progress of a generation run.
public struct GenerationProgress: Sendable {
    public var done: Int
    public var failed: Int
    public var total: Int
    public var requests: Int
    public var dollars: Double
    public var elapsed: Double
}

/// Sends every pending chunk of the store to the LLM (at most `limiter.slots` at once), validates
/// the replies and stores the pairs. Finished chunks are never sent again; a rerun continues.
public final class Generator: Sendable {
    public let store: RunStore
    public let client: LLMClient
    public let limiter: RateLimiter
    public let settings: GenerationSettings

    public init(store: RunStore, client: LLMClient, limiter: RateLimiter, settings: GenerationSettings) {
        self.store = store
        self.client = client
        self.limiter = limiter
        self.settings = settings
    }

    /// Runs until no chunk is pending. Throws (after the calls in flight end) on errors that
    /// stop a run: a refused key, exhausted quota, a bad request, the budget.
    public func run(progress: @escaping @Sendable (GenerationProgress) -> Void = { _ in }) async throws {
        let pending = try store.pendingChunks()
        let counts = try store.chunkCounts()
        let total = counts.values.reduce(0, +)
        let start = Date()
        let tracker = ProgressTracker(done: counts[.done] ?? 0, failed: counts[.failed] ?? 0)
        let slots = limiter.slots
        try await withThrowingTaskGroup(of: Void.self) { group in
            var iterator = pending.makeIterator()
            func addNext() -> Bool {
                guard let chunk = iterator.next() else { return false }
                group.addTask { try await self.process(chunk, tracker: tracker) }
                return true
            }
            for _ in 0..<slots where !addNext() { break }
            while try await group.next() != nil {
                let snapshot = await tracker.snapshot()
                progress(GenerationProgress(done: snapshot.0, failed: snapshot.1, total: total, requests: snapshot.2,
                                            dollars: await limiter.dollarsSpent, elapsed: Date().timeIntervalSince(start)))
                _ = addNext()
            }
        }
    }

    actor ProgressTracker {
        var done: Int, failed: Int, requests = 0
        init(done: Int, failed: Int) { self.done = done; self.failed = failed }
        func chunkDone() { done += 1 }
        func chunkFailed() { failed += 1 }
        func request() { requests += 1 }
        func snapshot() -> (Int, Int, Int) { (done, failed, requests) }
    }

    /// One chunk to the end: done, failed after its retries, or a run-stopping error.
    func process(_ chunk: ChunkRecord, tracker: ProgressTracker) async throws {
        var request = ChatRequest(model: settings.model, messages: settings.prompt.messages(extract: chunk.text),
                                  temperature: settings.temperature, maxTokens: settings.maxTokens, responseFormat: settings.responseFormat)
        if case .jsonSchema = settings.responseFormat {
            request.responseFormat = .jsonSchema(name: "instruction_answer_pairs", schema: settings.prompt.schema)
        }
        var invalidReplies = 0
        var transportFailures = 0
        var grewForLength = false
        var lastRaw: String? = nil
        while true {
            let requestID = try store.beginRequest(chunkID: chunk.id, promptHash: request.promptHash)
            let estimate = (request.messages.map(\.content.count).reduce(0, +)) / 4 + request.maxTokens
            let maxCost = settings.price.cost(promptTokens: estimate - request.maxTokens, completionTokens: request.maxTokens)
            await tracker.request()
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
                try store.failRequest(requestID, error: error.description, rawReply: nil, usage: Usage())
                guard error.isRetryable else { throw GenerationStopped(error: error) }
                transportFailures += 1
                if transportFailures >= settings.retry.maxAttempts {
                    try store.failChunk(chunk.id, reason: "\(error.description) after \(transportFailures) attempts", rawReply: lastRaw)
                    await tracker.chunkFailed()
                    return
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
                try store.failRequest(requestID, error: "finish_reason length: retrying once with max_tokens \(request.maxTokens * 2)",
                                      rawReply: reply.content, usage: usage)
                request.maxTokens *= 2
                continue
            }
            switch settings.prompt.parse(reply.content) {
            case let .success(pairs):
                try store.completeChunk(chunk.id, requestID: requestID, rawReply: reply.content, usage: usage, pairs: pairs)
                await tracker.chunkDone()
                return
            case let .failure(problem):
                try store.failRequest(requestID, error: problem.reason, rawReply: reply.content, usage: usage)
                invalidReplies += 1
                if invalidReplies >= settings.maxInvalidReplies {
                    try store.failChunk(chunk.id, reason: "\(problem.reason) (\(invalidReplies) invalid replies)", rawReply: reply.content)
                    await tracker.chunkFailed()
                    return
                }
            }
        }
    }
}

/// A run-stopping LLM error (bad key, no quota, bad request, budget).
public struct GenerationStopped: Error, CustomStringConvertible, Sendable {
    public let error: LLMError
    public var description: String { "generation stopped: \(error.description)" }
}
