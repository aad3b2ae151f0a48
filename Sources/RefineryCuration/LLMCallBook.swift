import Foundation
import RefineryCore
import RefineryLLM
import RefineryStore

/// Makes calls that the book does not have answers for. The one-machine executor calls the
/// endpoints itself; the cluster's hands the calls to workers as leased tasks. Either stores
/// each outcome in the state (`RunStore.commitCall`) as soon as it arrives.
public protocol LLMCallExecutor: AnyObject {
    /// Makes every call of `pending` (call ids of the state's `llm_call` table); returns when each
    /// is answered or failed. Throws when the run must stop (bad key, quota, budget). `step` names
    /// the calls in progress lines when a stage makes several kinds ("rewrites", "answers").
    func execute(_ pending: [(id: Int64, call: LLMCall)], purpose: String, step: String?, store: RunStore) throws
}

/// The answers of LLM-backed curation stages, each call made at most once per state file: a stage
/// asks for its calls, the book registers them by `LLMCall.cacheKey`, has the executor make the
/// ones never answered, and returns every call's record in order. A failed call (retryable errors
/// until the attempts ran out) is tried once more by a later process, never twice by the same one.
public final class LLMCallBook {
    public let store: RunStore
    public let executor: any LLMCallExecutor
    private var retried: Set<String> = []

    public init(store: RunStore, executor: any LLMCallExecutor) {
        self.store = store
        self.executor = executor
    }

    /// The stored record of every call, in order (answered or failed). `step` names these calls in
    /// progress lines when the stage makes several kinds of call.
    public func answers(_ calls: [LLMCall], purpose: String, step: String? = nil) throws -> [LLMCallRecord] {
        guard !calls.isEmpty else { return [] }
        let keys = calls.map(\.cacheKey)
        let fresh = Array(Set(keys).subtracting(retried))
        if !fresh.isEmpty { try store.retryFailedCalls(keys: fresh) }
        retried.formUnion(fresh)
        // Each distinct call once, in the order first asked (so ids, and the order calls are made in, follow the input).
        var seen: Set<String> = []
        let unique = zip(keys, calls).filter { seen.insert($0.0).inserted }
        let registered = try store.registerCalls(unique.map { (key: $0.0, purpose: purpose, call: $0.1.json.compactText) })
        let pending = unique.compactMap { key, call -> (id: Int64, call: LLMCall)? in
            guard let record = registered[key], record.status == .pending else { return nil }
            return (record.id, call)
        }.sorted { $0.id < $1.id }
        if !pending.isEmpty { try executor.execute(pending, purpose: purpose, step: step, store: store) }
        let records = try store.calls(keys: unique.map(\.0))
        return try keys.map { key in
            guard let record = records[key], record.status != .pending else {
                throw CoreError("an LLM call for \(purpose) ended without an answer or a failure; run the command again to resume")
            }
            return record
        }
    }
}

/// Makes calls from this process: at most `slots` at once through the rate limiter, each
/// outcome stored as it arrives, progress reported every second.
public final class LocalLLMCallExecutor: LLMCallExecutor {
    public let slots: Int
    public let requestsPerMinute: Int?
    public let tokensPerMinute: Int?
    /// Dollars all curation calls of the state may cost together (nil: no limit).
    public let budget: Double?
    public let retry: RetryPolicy
    public let timeout: Double
    public var report: @Sendable (String) -> Void

    public init(slots: Int = 4, requestsPerMinute: Int? = nil, tokensPerMinute: Int? = nil, budget: Double? = nil,
                retry: RetryPolicy = RetryPolicy(), timeout: Double = 120, report: @escaping @Sendable (String) -> Void = { _ in }) {
        self.slots = slots
        self.requestsPerMinute = requestsPerMinute
        self.tokensPerMinute = tokensPerMinute
        self.budget = budget
        self.retry = retry
        self.timeout = timeout
        self.report = report
    }

    public func execute(_ pending: [(id: Int64, call: LLMCall)], purpose: String, step: String?, store: RunStore) throws {
        let alreadySpent = budget == nil ? 0 : try store.callCost()
        let progress = CallProgress(total: pending.count, step: step, maxAttempts: retry.maxAttempts)
        let report = self.report
        let maker = LLMCallMaker(limiter: RateLimiter(slots: slots, requestsPerMinute: requestsPerMinute, tokensPerMinute: tokensPerMinute,
                                                      budget: budget, alreadySpent: alreadySpent), retry: retry, timeout: timeout,
                                 onRetry: { error, attempt, delay in
                                     if let line = progress.retrying(error, attempt: attempt, delay: delay) { report("[\(purpose)] \(line)") }
                                 })
        let stop: String? = try waitFor {
            try await withThrowingTaskGroup(of: (Int64, LLMCallResult).self) { group -> String? in
                var next = 0
                // Enough calls queued to keep every slot busy; the limiter holds the rest back.
                func add() {
                    guard next < pending.count else { return }
                    let (id, call) = pending[next]
                    next += 1
                    group.addTask { (id, await maker.make(call)) }
                }
                for _ in 0..<min(pending.count, maker.limiter.slots * 2) { add() }
                while let (id, result) = try await group.next() {
                    if result.status == .stopped {
                        group.cancelAll()
                        return result.error ?? "the endpoint refused the call"
                    }
                    try store.commitCall(id: id, outcome: LLMCallOutcomeRow(result), workerID: nil)
                    if let line = progress.record(result) { report("\r[\(purpose)] \(line)") }
                    add()
                }
                return nil
            }
        }
        if let stop { throw CoreError("\(purpose) stopped: \(stop)") }
        report("\r[\(purpose)] \(progress.line)\n")
        if let failures = progress.failureSummary { report("[\(purpose)] \(failures)") }
    }
}

extension LLMCallOutcomeRow {
    /// The row that stores `result` (answered or failed; a stopped call is not stored).
    public init(_ result: LLMCallResult) {
        self.init(answered: result.status == .answered, reply: result.status == .answered ? result.content : nil,
                  finishReason: result.finishReason, error: result.error, errorClass: result.errorClass?.rawValue, promptTokens: result.promptTokens,
                  completionTokens: result.completionTokens, cost: result.cost, attempts: result.attempts)
    }
}

/// Counts finished calls and says so at most once a second, as a status line with a bar.
final class CallProgress: @unchecked Sendable {
    private let lock = NSLock()
    private let total: Int
    private let step: String?
    private let maxAttempts: Int
    private var answered = 0, failed = 0
    private var cost = 0.0
    private let now: @Sendable () -> Date
    private let started: Date
    private var lastLine = Date.distantPast
    private var lastRetryNotice = Date.distantPast
    private var retriesSinceNotice = 0
    private var lastFailure: String?

    /// Seconds between two notices of retried attempts (the first is told at once).
    static let retryNoticeInterval = 5.0

    /// `now`: the clock (injected by tests).
    init(total: Int, step: String?, maxAttempts: Int, now: @escaping @Sendable () -> Date = { Date() }) {
        self.total = total
        self.step = step
        self.maxAttempts = maxAttempts
        self.now = now
        started = now()
    }

    /// Counts `result`; a progress line when a second has passed since the last.
    func record(_ result: LLMCallResult) -> String? {
        lock.lock()
        defer { lock.unlock() }
        if result.status == .answered { answered += 1 } else { failed += 1; lastFailure = result.error }
        cost += result.cost
        guard now().timeIntervalSince(lastLine) >= 1 else { return nil }
        lastLine = now()
        return unlockedLine
    }

    /// Counts a failed attempt that will be tried again; a notice naming the error when
    /// `retryNoticeInterval` has passed since the last, so a dead endpoint is seen at once and
    /// a busy one does not flood the terminal.
    func retrying(_ error: LLMError, attempt: Int, delay: Double) -> String? {
        lock.lock()
        defer { lock.unlock() }
        retriesSinceNotice += 1
        guard now().timeIntervalSince(lastRetryNotice) >= Self.retryNoticeInterval else { return nil }
        lastRetryNotice = now()
        let others = retriesSinceNotice > 1 ? String(format: "; %d attempts retried since the last notice", retriesSinceNotice) : ""
        retriesSinceNotice = 0
        return String(format: "retrying: %@ (attempt %d of %d failed, next in %.1f s%@)", error.description, attempt, maxAttempts, delay, others)
    }

    /// After the calls: how many failed and the last error, with what to do (nil: none failed).
    var failureSummary: String? {
        lock.lock()
        defer { lock.unlock() }
        guard failed > 0 else { return nil }
        return "\(failed) of \(total) calls failed (last: \(lastFailure ?? "no error text")); they are kept as failures, and running the same command again tries them once more"
    }

    var line: String {
        lock.lock()
        defer { lock.unlock() }
        return unlockedLine
    }

    private var unlockedLine: String {
        let elapsed = max(now().timeIntervalSince(started), 1e-9)
        let rate = Double(answered + failed) / elapsed
        let eta = rate > 0 && answered + failed < total ? String(format: ", ETA %.0fs", Double(total - answered - failed) / rate) : ""
        return ProgressBar.render(done: answered + failed, total: total) + (step.map { " \($0):" } ?? "")
            + String(format: " %d/%d calls answered, %d failed, %.1f calls/s, $%.4f", answered, total, failed, rate, cost) + eta
    }
}
