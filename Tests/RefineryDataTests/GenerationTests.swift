import Foundation
import RefineryCore
import Testing
@testable import RefineryData
@testable import RefineryLLM
import RefineryMockLLM
import RefineryStore
import RefineryText

/// Generation against a real mock-llm HTTP server on loopback.
@Suite struct GenerationTests {
    /// Starts a mock server on a free port; returns its base URL, state and the task to cancel.
    static func startMock(_ options: MockLLMOptions) async throws -> (String, MockLLMState, Task<Void, Error>) {
        try await MockLLMServer.start(options)
    }

    /// `count` articles of unique text, each long enough for a few chunks.
    static func writeArticles(count: Int, to url: URL) throws {
        let fixture = try JSONValue.parse(bytes: Array(try Data(contentsOf: IngestTests.fixtures.appendingPathComponent("chunking.json"))))
        let raws = (fixture["cases"]?.arrayValue ?? []).compactMap { $0["raw"]?.stringValue }
        let articles: [JSONValue] = (0..<count).map { i in
            let body = raws[i % 4].split(separator: "\n\n").enumerated().map { j, paragraph in
                "Article \(i), part \(j), begins here. " + paragraph
            }.joined(separator: "\n\n")
            return .object([("id", .string("article-\(i)")), ("content", .string(body)), ("platform", .string("blog")),
                            ("author_id", .string("u\(i % 5)")), ("author_full_name", .string("Author \(i % 5)")), ("link", .string("https://example.org/\(i)"))])
        }
        try JSONValue.object([("artifact_data", .array(articles))]).compactText.write(to: url, atomically: true, encoding: .utf8)
    }

    static func settings(maxAttempts: Int = 12) -> GenerationSettings {
        var settings = GenerationSettings(model: "mock-model")
        settings.retry = RetryPolicy(maxAttempts: maxAttempts, baseDelay: 0.01, maxDelay: 0.05)
        return settings
    }

    @Test func faultyServerStillYieldsEveryChunk() async throws {
        var options = MockLLMOptions()
        options.rateLimitShare = 0.2
        options.serverErrorShare = 0.1
        options.malformedShare = 0.1
        let (url, state, server) = try await Self.startMock(options)
        defer { server.cancel() }
        let dir = try IngestTests.temporary()
        try Self.writeArticles(count: 50, to: dir.appendingPathComponent("articles.json"))
        let store = try RunStore(path: dir.appendingPathComponent("state.db").path)
        let report = try Ingest.run(articles: dir.appendingPathComponent("articles.json").path, store: store, cleaning: .reference, chunker: try Chunker())
        #expect(report.newArticles == 50 && report.chunking.chunks >= 100)
        // A malformed reply is an invalid one, and a chunk gives up after `maxInvalidReplies`: with
        // 3 (the default) a chunk fails with probability (0.1 / 0.7)^3 ≈ 0.3%, so 3 or more of 150
        // fail in ~1% of runs (seen in CI); with 6 that is ~1e-9.
        var settings = Self.settings()
        settings.maxInvalidReplies = 6
        let generator = Generator(store: store, client: LLMClient(endpoint: LLMEndpoint(baseURL: url, apiKey: nil)),
                                  limiter: RateLimiter(slots: 4), settings: settings)
        try await generator.run()
        let chunks = try store.allChunks()
        #expect(chunks.allSatisfy { $0.status != .pending })
        let samples = try store.samples()
        let perChunk = Dictionary(grouping: samples, by: \.chunkID).mapValues(\.count)
        for chunk in chunks {
            if chunk.status == .done { #expect(perChunk[chunk.id] == 5, "chunk \(chunk.id)") }
        }
        for failure in try store.failures() { #expect(failure.reason.contains("invalid replies"), "only the invalid-reply rule gives up: \(failure.reason)") }
        let done = chunks.filter { $0.status == .done }.count
        #expect(done >= chunks.count - 2, "\(done) of \(chunks.count) done")
        let outcomes = await state.byOutcome
        #expect((outcomes["429"] ?? 0) > 0 && (outcomes["500"] ?? 0) > 0 && (outcomes["malformed"] ?? 0) > 0)
        #expect(await state.maxInFlight <= 4)
        #expect(await state.repeatedAnswers == 0, "no chunk was answered twice")
    }

    @Test func wrongKeyStopsAtOnceAndIsStoredNowhere() async throws {
        var options = MockLLMOptions()
        options.requiredKey = "sk-right-key"
        let (url, state, server) = try await Self.startMock(options)
        defer { server.cancel() }
        let dir = try IngestTests.temporary()
        try Self.writeArticles(count: 10, to: dir.appendingPathComponent("articles.json"))
        let statePath = dir.appendingPathComponent("state.db").path
        let store = try RunStore(path: statePath)
        _ = try Ingest.run(articles: dir.appendingPathComponent("articles.json").path, store: store, cleaning: .reference, chunker: try Chunker())
        let secret = "sk-wrong-key-7f3a9c"
        let generator = Generator(store: store, client: LLMClient(endpoint: LLMEndpoint(baseURL: url, apiKey: secret)),
                                  limiter: RateLimiter(slots: 4), settings: Self.settings())
        do {
            try await generator.run()
            Issue.record("a wrong key must stop the run")
        } catch let error as GenerationStopped {
            #expect(error.error == .authentication("Incorrect API key provided."))
            #expect(!error.description.contains(secret))
        }
        #expect(await state.requests <= 4, "no retry storm")
        for suffix in ["", "-wal", "-shm"] {
            if let data = FileManager.default.contents(atPath: statePath + suffix) {
                #expect(data.range(of: Data(secret.utf8)) == nil, "key found in \(statePath + suffix)")
            }
        }
    }

    @Test func exhaustedQuotaStopsWithoutRetrying() async throws {
        var options = MockLLMOptions()
        options.quotaExhausted = true
        let (url, state, server) = try await Self.startMock(options)
        defer { server.cancel() }
        let dir = try IngestTests.temporary()
        try Self.writeArticles(count: 10, to: dir.appendingPathComponent("articles.json"))
        let store = try RunStore(path: dir.appendingPathComponent("state.db").path)
        _ = try Ingest.run(articles: dir.appendingPathComponent("articles.json").path, store: store, cleaning: .reference, chunker: try Chunker())
        let generator = Generator(store: store, client: LLMClient(endpoint: LLMEndpoint(baseURL: url, apiKey: nil)),
                                  limiter: RateLimiter(slots: 4), settings: Self.settings())
        await #expect(throws: GenerationStopped.self) { try await generator.run() }
        #expect(await state.requests <= 4)
        #expect(try store.pendingChunks().count == store.allChunks().count, "nothing was marked failed: a rerun with credit continues")
    }

    @Test func repliesAreValidated() {
        let prompt = GenerationPrompt(pairsPerChunk: 2)
        let good = #"{"instruction_answer_pairs": [{"instruction": "a", "answer": "b"}, {"instruction": "c", "answer": "d"}]}"#
        #expect((try? prompt.parse(good).get())?.count == 2)
        #expect((try? prompt.parse("```json\n" + good + "\n```").get())?.count == 2)
        if case let .failure(problem) = prompt.parse(#"{"instruction_answer_pairs": [{"instruction": "a", "answer": "b"}]}"#) {
            #expect(problem.reason.contains("1 pairs instead of 2"))
        } else { Issue.record("wrong count accepted") }
        if case .success = prompt.parse("{not json") { Issue.record("invalid JSON accepted") }
        if case .success = prompt.parse(#"{"instruction_answer_pairs": [{"instruction": "", "answer": "b"}, {"instruction": "c", "answer": "d"}]}"#) {
            Issue.record("empty instruction accepted")
        }
    }
}

/// Timeouts, cut-off replies, per-minute limits and the dollar budget.
@Suite struct GenerationLimitTests {
    static func prepared(articles: Int) throws -> RunStore {
        let dir = try IngestTests.temporary()
        try GenerationTests.writeArticles(count: articles, to: dir.appendingPathComponent("articles.json"))
        let store = try RunStore(path: dir.appendingPathComponent("state.db").path)
        _ = try Ingest.run(articles: dir.appendingPathComponent("articles.json").path, store: store, cleaning: .reference, chunker: try Chunker())
        return store
    }

    @Test func hangingRequestsTimeOutAndAreRetried() async throws {
        var options = MockLLMOptions()
        options.hangShare = 0.3
        options.hangSeconds = 3
        let (url, state, server) = try await GenerationTests.startMock(options)
        defer { server.cancel() }
        let store = try Self.prepared(articles: 4)
        let generator = Generator(store: store, client: LLMClient(endpoint: LLMEndpoint(baseURL: url, apiKey: nil, timeout: 0.3)),
                                  limiter: RateLimiter(slots: 4), settings: GenerationTests.settings())
        try await generator.run()
        #expect(try store.chunkCounts()[.done] == store.allChunks().count)
        let chunkCount = try store.allChunks().count
        #expect(await state.requests > chunkCount, "some requests hung and were sent again")
    }

    @Test func lengthCutOffRetriesOnceWithMoreTokens() async throws {
        var options = MockLLMOptions()
        options.lengthShare = 1
        let (url, _, server) = try await GenerationTests.startMock(options)
        defer { server.cancel() }
        let store = try Self.prepared(articles: 2)
        var settings = GenerationTests.settings()
        settings.maxTokens = 1200
        let generator = Generator(store: store, client: LLMClient(endpoint: LLMEndpoint(baseURL: url, apiKey: nil)),
                                  limiter: RateLimiter(slots: 2), settings: settings)
        try await generator.run()
        // Every chunk: one cut-off reply at 1200 tokens, then a full one at 2400.
        #expect(try store.chunkCounts()[.done] == store.allChunks().count)
        #expect(try store.totalUsage().requests == 2 * store.allChunks().count)
    }

    @Test func budgetStopsNewCalls() async throws {
        let (url, state, server) = try await GenerationTests.startMock(MockLLMOptions())
        defer { server.cancel() }
        let store = try Self.prepared(articles: 6)
        var settings = GenerationTests.settings()
        settings.price = Price(inputPerMillion: 1000, outputPerMillion: 1000)  // ~$1.5 of reservation per call
        let generator = Generator(store: store, client: LLMClient(endpoint: LLMEndpoint(baseURL: url, apiKey: nil)),
                                  limiter: RateLimiter(slots: 1, budget: 3.5), settings: settings)
        await #expect(throws: GenerationStopped.self) { try await generator.run() }
        let spent = try store.totalUsage().usage.cost
        #expect(spent <= 3.5 && spent > 0)
        let chunkCount = try store.allChunks().count
        #expect(await state.requests < chunkCount)
    }

    @Test func requestsPerMinuteAreRespected() async throws {
        let limiter = RateLimiter(slots: 8, requestsPerMinute: 3)
        let start = Date()
        for _ in 0..<3 {
            try await limiter.acquire(estimatedTokens: 10, maxCost: 0)
            await limiter.release(maxCost: 0, actualCost: 0)
        }
        #expect(Date().timeIntervalSince(start) < 1, "three calls fit in the minute")
        let blocked = Task { try await limiter.acquire(estimatedTokens: 10, maxCost: 0) }
        try await Task.sleep(nanoseconds: 300_000_000)
        #expect(await limiter.peakInFlight <= 8)
        blocked.cancel()
        // The fourth call waits for the window: it has not been granted within 0.3 s — unless this
        // task was kept waiting a whole minute (a loaded machine), when the window has reopened.
        let granted = await limiter.grantedCount
        #expect(granted == 3 || Date().timeIntervalSince(start) >= 60, "granted \(granted) after \(Date().timeIntervalSince(start)) s")
    }
}
