import Foundation
import RefineryLLM
import Testing

/// The dollar budget in the limiter: a call waits while calls in flight hold the room it needs
/// (their reservations mostly come back), and is refused only when what is spent leaves none.
@Suite struct BudgetLimiterTests {
    /// Whether `task` has finished within `seconds` (polling; the limiter has no clock to inject).
    static func finished(_ task: Task<Void, any Error>, within seconds: Double, flag: Flag) async -> Bool {
        let end = Date().addingTimeInterval(seconds)
        while Date() < end {
            if flag.isSet { return true }
            try? await Task.sleep(nanoseconds: 5_000_000)
        }
        return flag.isSet
    }

    @Test func aCallWaitsForReservationsToSettleAndIsRefusedOnlyWhenSpent() async throws {
        let limiter = RateLimiter(slots: 4, budget: 1.0)
        try await limiter.acquire(estimatedTokens: 10, maxCost: 0.6)  // A: 0.6 reserved
        let bGranted = Flag()
        let b = Task {
            try await limiter.acquire(estimatedTokens: 10, maxCost: 0.6)  // 0.6 + 0.6 > 1: waits for A
            bGranted.set()
        }
        #expect(await !Self.finished(b, within: 0.2, flag: bGranted), "B waits while A's reservation holds the room")
        await limiter.release(maxCost: 0.6, actualCost: 0.1)  // A settles cheaply: 0.1 spent
        #expect(await Self.finished(b, within: 5, flag: bGranted), "B goes once A's reservation is returned")
        try await b.value
        // C would fit beside B's reservation only if B came back cheap; B spends 0.5.
        let c = Task { try await limiter.acquire(estimatedTokens: 10, maxCost: 0.6) }
        try await Task.sleep(nanoseconds: 50_000_000)
        await limiter.release(maxCost: 0.6, actualCost: 0.5)  // spent 0.6: no room for 0.6 more
        do {
            try await c.value
            Issue.record("C must be refused: $0.6 spent of $1, and it may cost $0.6")
        } catch {
            guard case let .budgetExhausted(spent, limit, needed) = error as? LLMError else { Issue.record("\(error)"); return }
            #expect(abs(spent - 0.6) < 1e-9 && limit == 1.0 && needed == 0.6)
        }
        #expect(await limiter.dollarsSpent <= 1.0)
    }

    @Test func whatEarlierRunsSpentCounts() async throws {
        let limiter = RateLimiter(slots: 1, budget: 1.0, alreadySpent: 0.9)
        await #expect(throws: LLMError.self) { try await limiter.acquire(estimatedTokens: 10, maxCost: 0.2) }
        try await limiter.acquire(estimatedTokens: 10, maxCost: 0.05)
        #expect(LLMError.budgetExhausted(spent: 0.9, limit: 1, needed: 0.2).description.contains("$0.9000 of $1.0000 spent, and a call may cost up to $0.2000"))
    }
}

/// A flag set from one task and read from another.
final class Flag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    func set() { lock.lock(); value = true; lock.unlock() }
    var isSet: Bool { lock.lock(); defer { lock.unlock() }; return value }
}
