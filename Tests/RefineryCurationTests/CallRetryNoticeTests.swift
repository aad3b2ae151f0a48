import Foundation
import RefineryCuration
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
        // The first notice comes at once; the rest of the retries fall within the notice interval.
        #expect(notices.count == 1, "\(lines.all)")
        #expect(notices.first?.contains("attempt 1 of 3 failed") == true, "\(notices)")
        let summary = lines.all.first { $0.hasPrefix("[judge] 2 of 2 calls failed (last: 3 attempts failed, the last with: server error 500") }
        #expect(summary != nil, "\(lines.all)")
    }
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
