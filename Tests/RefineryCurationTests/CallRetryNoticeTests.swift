import Foundation
@testable import RefineryCuration
import RefineryLLM
import RefineryText
import RefineryMockLLM
import RefineryStore
import Testing

/// The one-machine executor against a real mock server that answers every call with a 500: the
/// user sees the retries as they happen, and at the end how many calls failed and why.
@Suite struct CallRetryNoticeTests {
    @Test func retriesAreToldAsTheyHappenAndFailuresAreSummed() async throws {
        var options = MockLLMOptions()
        options.serverErrorShare = 1
        let (url, state, server) = try await MockLLMServer.start(options)
        defer { server.cancel() }
        let lines = ReportLines()
        // The executor blocks its caller until the calls end: a thread of its own, not one of the
        // cooperative pool's (which the mock server's handlers need).
        let statuses = try await onOwnThread { () throws -> [String] in
            let executor = LocalLLMCallExecutor(slots: 2, retry: RetryPolicy(maxAttempts: 3, baseDelay: 0.01, maxDelay: 0.02), timeout: 60,
                                                report: { lines.add($0) })
            let book = LLMCallBook(store: try JudgeTests.store(), executor: executor)
            let calls = (0..<2).map { index in
                LLMCall(baseURL: url, request: ChatRequest(model: "judge", messages: [ChatMessage(role: "user", content: "question \(index)")],
                                                            temperature: 0, maxTokens: 16, responseFormat: .text))
            }
            return try book.answers(calls, purpose: "judge").map(\.status.rawValue)
        }
        #expect(statuses == ["failed", "failed"])
        #expect(await state.requests == 6, "3 attempts of each call")
        let notices = lines.all.filter { $0.hasPrefix("[judge] retrying: server error 500") }
        // The first notice comes at once; the rest are throttled (see the clock-driven test below),
        // so at most one per retried attempt, however slowly a loaded machine runs them.
        #expect((1...4).contains(notices.count), "\(lines.all)")
        #expect(notices.first?.contains("attempt 1 of 3 failed") == true, "\(notices)")
        let summary = lines.all.first { $0.hasPrefix("[judge] 2 of 2 calls failed (last: 3 attempts failed, the last with: server error 500") }
        #expect(summary != nil, "\(lines.all)")
    }
}

/// An embeddings endpoint that is gone (a mock server, stopped): each retried batch is told, then
/// the error names the endpoint.
@Suite struct EmbeddingRetryNoticeTests {
    @Test func retriedEmbeddingBatchesAreTold() async throws {
        let (url, _, server) = try await MockLLMServer.start(MockLLMOptions())
        server.cancel()
        _ = await server.result
        let lines = ReportLines()
        let failure = try await onOwnThread { () -> String in
            let embedder = EndpointTextEmbedder(endpoint: LLMEndpoint(baseURL: url, apiKey: nil, timeout: 60), model: "e", batchSize: 4,
                                                retry: RetryPolicy(maxAttempts: 3, baseDelay: 0.01, maxDelay: 0.02), onRetry: { lines.add($0) })
            do {
                _ = try embedder.embed(["a", "b"], progress: { _ in })
                return "no error"
            } catch {
                return "\(error)"
            }
        }
        #expect(failure.contains("failed for model e after 3 attempts") && failure.contains("cannot reach \(url)"), "\(failure)")
        #expect(lines.all.count == 2 && lines.all.allSatisfy { $0.hasPrefix("retrying a batch of 2 texts: connection failed: cannot reach") }, "\(lines.all)")
        #expect(lines.all.first?.contains("attempt 1 of 3 failed") == true)
    }
}

/// The throttle of retry notices, on an injected clock.
@Suite struct RetryNoticeThrottleTests {
    @Test func theFirstRetryIsToldAtOnceThenAtMostOneNoticePerInterval() {
        let clock = ManualDate()
        let progress = CallProgress(total: 3, step: nil, maxAttempts: 8, now: { clock.now })
        let refused = LLMError.connection("cannot reach http://127.0.0.1:1/v1: Connection refused (errno 111)")
        let first = progress.retrying(refused, attempt: 1, delay: 0.5)
        #expect(first == "retrying: connection failed: cannot reach http://127.0.0.1:1/v1: Connection refused (errno 111) (attempt 1 of 8 failed, next in 0.5 s)")
        clock.advance(1)
        #expect(progress.retrying(refused, attempt: 1, delay: 0.5) == nil)
        clock.advance(1)
        #expect(progress.retrying(refused, attempt: 2, delay: 1) == nil)
        clock.advance(CallProgress.retryNoticeInterval)
        let later = progress.retrying(.server(status: 503, message: "overloaded"), attempt: 3, delay: 2)
        #expect(later == "retrying: server error 503: overloaded (attempt 3 of 8 failed, next in 2.0 s; 3 attempts retried since the last notice)")
    }
}

/// A clock tests move by hand.
final class ManualDate: @unchecked Sendable {
    private let lock = NSLock()
    private var current = Date(timeIntervalSince1970: 1_000_000)
    var now: Date { lock.lock(); defer { lock.unlock() }; return current }
    func advance(_ seconds: Double) { lock.lock(); current += seconds; lock.unlock() }
}

/// Report lines, from any thread.
final class ReportLines: @unchecked Sendable {
    private let lock = NSLock()
    private var lines: [String] = []

    func add(_ line: String) {
        lock.lock()
        defer { lock.unlock() }
        lines.append(line)
    }

    var all: [String] { lock.lock(); defer { lock.unlock() }; return lines }
}

/// Runs `body` on a thread of its own and waits for it without holding a cooperative thread.
func onOwnThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread { continuation.resume(with: Result { try body() }) }.start()
    }
}
