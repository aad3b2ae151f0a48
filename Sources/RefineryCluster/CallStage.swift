import Foundation
import RefineryLLM
import RefineryStore

/// The LLM calls of a curation stage (judge, evolve, feedback…) at the coordinator: each call not
/// yet answered is a task ("call:ID", its row in the state's call table); a worker makes it and
/// brings back the answer, which is stored at once. The run-wide requests and tokens per minute
/// and the dollar budget are granted here, as for generation.
public final class CallStage: ClusterStage {
    public let name: String
    /// What these calls are within the stage ("rewrites", "answers"), for progress lines.
    public let step: String?
    public let leaseTimeout: Double
    private let store: RunStore
    private var calls: [Int64: LLMCall] = [:]
    private var queue: [Int64]
    private var queued: Set<Int64>
    private var open: Set<Int64>
    private var allowance: CallAllowance
    private let retry: RetryPolicy
    private let timeout: Double
    private let total: Int
    private var answered = 0, failed = 0
    private let started = Date().timeIntervalSince1970

    /// `pending`: the calls to make (ids of the call table). `budget`: dollars the whole run may
    /// spend (generation and curation calls together). `timeout`: seconds one attempt may take.
    /// `step`: what these calls are within the stage, when it makes several kinds.
    public init(purpose: String, step: String? = nil, pending: [(id: Int64, call: LLMCall)], store: RunStore, requestsPerMinute: Int? = nil,
                tokensPerMinute: Int? = nil, budget: Double? = nil, retry: RetryPolicy = RetryPolicy(), timeout: Double = 120) throws {
        name = purpose
        self.step = step
        self.store = store
        self.retry = retry
        self.timeout = timeout
        // A call may take its attempts, each up to the timeout, with backoff between them.
        leaseTimeout = Double(retry.maxAttempts) * (timeout + retry.maxDelay) + 60
        for (id, call) in pending { calls[id] = call }
        queue = pending.map(\.id).sorted(by: >)  // popped from the end: lowest id first
        queued = Set(queue)
        open = Set(queue)
        total = pending.count
        allowance = CallAllowance(requestsPerMinute: requestsPerMinute, tokensPerMinute: tokensPerMinute, budget: budget,
                                  spent: try store.totalUsage().usage.cost + store.callCost())
        try store.recordBudget(budget)
    }

    static func callID(_ task: TaskID) -> Int64? { if case let .call(id) = task { return id } else { return nil } }

    public var isComplete: Bool { open.isEmpty }

    public func capacity(of worker: ConnectedWorker) -> Int { worker.slots }

    public func takeTask(for worker: ConnectedWorker, now: Double) throws -> TaskID? {
        while let id = queue.last {
            guard open.contains(id), let call = calls[id] else {
                queue.removeLast()
                queued.remove(id)
                continue
            }
            let tokens = call.request.messages.map(\.content.count).reduce(0, +) / 4 + call.request.maxTokens
            guard allowance.grant(tokens: tokens, now: now) else { return nil }
            queue.removeLast()
            queued.remove(id)
            return .call(id)
        }
        return nil
    }

    public func messages(for lease: Lease, worker: ConnectedWorker) throws -> [Refinery_Cluster_Envelope.OneOf_Body] {
        guard let id = Self.callID(lease.task), let call = calls[id] else { throw ClusterError("no call for task \(lease.task)") }
        var task = Refinery_Cluster_CallTask()
        task.lease = lease.message
        task.callID = id
        task.call = call.json.compactText
        task.retryAttempts = UInt32(clamping: retry.maxAttempts)
        task.retryBaseDelay = retry.baseDelay
        task.retryMaxDelay = retry.maxDelay
        task.timeoutSeconds = timeout
        return [.callTask(task)]
    }

    public func requeue(_ task: TaskID) {
        guard let id = Self.callID(task), open.contains(id), !queued.contains(id) else { return }
        queue.append(id)  // next out
        queued.insert(id)
    }

    public func isOpen(_ task: TaskID) -> Bool { Self.callID(task).map { open.contains($0) } ?? false }

    /// An answer is stored whenever its call is still open, whatever its epoch (the coordinator
    /// checked that its sender was granted that epoch): it is paid for already.
    public func accept(_ stageResult: StageResult, lease: Lease, isCurrent: Bool, from worker: ConnectedWorker) throws -> ResultVerdict {
        guard case let .call(result) = stageResult, let id = Self.callID(lease.task), id == result.callID else {
            return .dropped("not a call result for \(lease.task)")
        }
        if result.outcome == "stopped" { return .stopRun("\(name): \(result.error)") }
        let stored = try Self.commit(result, lease: lease, worker: worker, store: store)
        guard open.remove(id) != nil else {
            // A call of another round (a worker's answer from before a restart): kept for when it is asked.
            return stored ? .stored : .dropped("call \(id) is answered already")
        }
        calls[id] = nil
        guard stored else { return .dropped("call \(id) is answered already") }
        allowance.spent += result.cost
        if result.outcome == "answered" { answered += 1 } else { failed += 1 }
        return .stored
    }

    /// Stores a call's outcome if the call is still pending in the state, whichever stage runs now:
    /// an answer is paid for, so it is kept for the round that asks for it. Returns whether it was stored.
    public static func commit(_ result: Refinery_Cluster_CallResult, lease: Lease, worker: ConnectedWorker, store: RunStore) throws -> Bool {
        guard result.outcome == "answered" || result.outcome == "failed" else { return false }
        let isAnswered = result.outcome == "answered"
        let outcome = LLMCallOutcomeRow(answered: isAnswered, reply: isAnswered ? result.content : nil,
                                        finishReason: result.finishReason.isEmpty ? nil : result.finishReason,
                                        error: result.error.isEmpty ? nil : result.error,
                                        errorClass: result.errorClass.isEmpty ? nil : result.errorClass, promptTokens: Int(result.promptTokens),
                                        completionTokens: Int(result.completionTokens), cost: result.cost, attempts: Int(result.attempts))
        return try store.commitCall(id: result.callID, outcome: outcome, workerID: worker.id, taskID: lease.task.key)
    }

    public func tick(now: Double) throws {
        if allowance.budgetSpent, let budget = allowance.budget, open.count > 0, queue.count == open.count {
            throw ClusterError(String(format: "the dollar budget is spent ($%.4f of $%.4f) with %d %@ calls left; raise generate.budget and start the coordinator again to continue",
                                      allowance.spent, budget, open.count, name))
        }
    }

    public var progress: (done: Int, total: Int) { (answered + failed, total) }

    public var progressLine: String {
        let elapsed = max(Date().timeIntervalSince1970 - started, 1e-9)
        return (step.map { "\($0): " } ?? "") + String(format: "%d/%d calls answered, %d failed, %.2f calls/s, $%.4f", answered, total, failed, Double(answered + failed) / elapsed, allowance.spent)
    }
}
