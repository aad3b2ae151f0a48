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
        processor = ChunkProcessor(client: client, limiter: limiter, settings: settings)
    }

    private let processor: ChunkProcessor

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
        switch try await processor.process(chunkID: chunk.id, text: chunk.text, ledger: store, onRequest: { await tracker.request() }) {
        case .done: await tracker.chunkDone()
        case .failed: await tracker.chunkFailed()
        }
    }
}

/// A run-stopping LLM error (bad key, no quota, bad request, budget).
public struct GenerationStopped: Error, CustomStringConvertible, Sendable {
    public let error: LLMError
    public var description: String { "generation stopped: \(error.description)" }
}
