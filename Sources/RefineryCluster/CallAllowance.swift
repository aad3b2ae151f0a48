import Foundation

/// The run-wide limits on LLM calls granted to all workers together: requests and tokens per
/// sliding minute and the dollar budget. A stage asks before handing out a call and records the
/// dollars its results report.
struct CallAllowance {
    let requestsPerMinute: Int?
    let tokensPerMinute: Int?
    let budget: Double?
    /// Dollars spent so far (all of the run's calls, results stored before this process included).
    var spent: Double
    private var granted: [(time: Double, tokens: Int)] = []

    init(requestsPerMinute: Int?, tokensPerMinute: Int?, budget: Double?, spent: Double) {
        self.requestsPerMinute = requestsPerMinute
        self.tokensPerMinute = tokensPerMinute
        self.budget = budget
        self.spent = spent
    }

    var budgetSpent: Bool { budget.map { spent >= $0 } ?? false }

    /// Whether a call of about `tokens` tokens may go now; if so it is counted against the minute.
    /// A single call larger than the tokens-per-minute limit still goes, alone.
    mutating func grant(tokens: Int, now: Double) -> Bool {
        if budgetSpent { return false }
        granted.removeAll { now - $0.time >= 60 }
        if let rpm = requestsPerMinute, granted.count >= rpm { return false }
        if let tpm = tokensPerMinute, !granted.isEmpty, granted.map(\.tokens).reduce(0, +) + tokens > tpm { return false }
        granted.append((now, tokens))
        return true
    }
}
