import Foundation

/// Grants permission for LLM calls: at most `slots` in flight, at most `requestsPerMinute` and
/// `tokensPerMinute` over any sliding minute, and never past the dollar budget.
public actor RateLimiter {
    public nonisolated let slots: Int
    public nonisolated let requestsPerMinute: Int?
    public let tokensPerMinute: Int?
    public let budget: Double?
    private var inFlight = 0
    private var waiters: [CheckedContinuation<Void, Never>] = []
    /// Calls waiting for reservations of calls in flight to settle before the budget has room.
    private var budgetWaiters: [CheckedContinuation<Void, Never>] = []
    private var recent: [(time: Double, tokens: Int)] = []
    private var spent = 0.0
    private var reserved = 0.0
    /// Calls granted so far.
    public private(set) var grantedCount = 0
    /// Most calls in flight at once so far.
    public private(set) var peakInFlight = 0

    /// `alreadySpent`: dollars the budget paid before this limiter (earlier runs on the same state).
    public init(slots: Int = 4, requestsPerMinute: Int? = nil, tokensPerMinute: Int? = nil, budget: Double? = nil, alreadySpent: Double = 0) {
        self.slots = max(1, slots)
        self.requestsPerMinute = requestsPerMinute
        self.tokensPerMinute = tokensPerMinute
        self.budget = budget
        spent = alreadySpent
    }

    static func now() -> Double { Date().timeIntervalSince1970 }

    /// Waits for a slot and for room under the per-minute limits, and reserves `maxCost` dollars.
    /// When calls in flight hold the budget's room (their reservations, mostly returned when they
    /// settle), it waits for them; it throws only when what is spent leaves no room for this call.
    public func acquire(estimatedTokens: Int, maxCost: Double) async throws(LLMError) {
        if let budget {
            while spent + reserved + maxCost > budget {
                if spent + maxCost > budget { throw .budgetExhausted(spent: spent, limit: budget, needed: maxCost) }
                await withCheckedContinuation { budgetWaiters.append($0) }
                if Task.isCancelled { throw .connection("cancelled while waiting for the budget") }
            }
        }
        reserved += maxCost
        if inFlight >= slots {
            await withCheckedContinuation { waiters.append($0) }
        } else {
            inFlight += 1
        }
        peakInFlight = max(peakInFlight, inFlight)
        while true {
            let now = Self.now()
            recent.removeAll { now - $0.time >= 60 }
            let requestsOK = requestsPerMinute.map { recent.count < $0 } ?? true
            let tokensOK = tokensPerMinute.map { recent.map(\.tokens).reduce(0, +) + estimatedTokens <= $0 || recent.isEmpty } ?? true
            if requestsOK && tokensOK { break }
            if Task.isCancelled {
                release(maxCost: maxCost, actualCost: 0)
                throw .connection("cancelled while waiting for the rate limit")
            }
            let oldest = recent.first?.time ?? now
            try? await Task.sleep(nanoseconds: UInt64(max(0.05, 60 - (now - oldest)) * 1e9))
        }
        recent.append((Self.now(), estimatedTokens))
        grantedCount += 1
    }

    /// Frees the slot and turns the reservation into the actual cost.
    public func release(maxCost: Double, actualCost: Double) {
        reserved -= maxCost
        spent += actualCost
        let budgetWaiting = budgetWaiters
        budgetWaiters = []
        for waiter in budgetWaiting { waiter.resume() }
        if waiters.isEmpty {
            inFlight -= 1
        } else {
            waiters.removeFirst().resume()
        }
    }

    /// Dollars spent so far.
    public var dollarsSpent: Double { spent }
}
