import Foundation
import RefineryStore

/// The generation stage at the coordinator: every pending chunk is a task ("chunk:ID"); a
/// worker sends the chunk's prompt and brings back its pairs, or its failure after retries.
/// The run-wide requests-per-minute limit and dollar budget are granted here.
public final class GenerationStage: ClusterStage {
    public let name = "generate"
    public let leaseTimeout: Double
    private let store: RunStore
    private var queue: [Int64] = []
    private var queued: Set<Int64> = []
    private var open: Set<Int64> = []
    private var texts: [Int64: String] = [:]
    /// Tokens a chunk's call may use: its prompt (about 4 characters a token) plus the reply limit.
    private let tokenEstimate: (String) -> Int
    private var allowance: CallAllowance
    private var done: Int
    private var failed: Int
    private let total: Int
    private let started = Date().timeIntervalSince1970
    private var answeredHere = 0

    /// `requestsPerMinute`, `tokensPerMinute`: run-wide limits on the calls granted to all workers
    /// together (a call's tokens estimated by `tokenEstimate` from the chunk's text).
    /// `leaseTimeout`: how long one chunk may take, retries included, before it is handed out again.
    public init(store: RunStore, requestsPerMinute: Int? = nil, tokensPerMinute: Int? = nil,
                tokenEstimate: @escaping (String) -> Int = { $0.count / 4 + 1200 }, budget: Double? = nil, leaseTimeout: Double = 900) throws {
        self.store = store
        self.tokenEstimate = tokenEstimate
        self.leaseTimeout = leaseTimeout
        for chunk in try store.pendingChunks() {
            queue.append(chunk.id)
            queued.insert(chunk.id)
            open.insert(chunk.id)
            texts[chunk.id] = chunk.text
        }
        queue.reverse()  // popped from the end: lowest id first
        let counts = try store.chunkCounts()
        done = counts[.done] ?? 0
        failed = counts[.failed] ?? 0
        total = counts.values.reduce(0, +)
        allowance = CallAllowance(requestsPerMinute: requestsPerMinute, tokensPerMinute: tokensPerMinute, budget: budget,
                                  spent: try store.totalUsage().usage.cost)
        try store.recordBudget(budget)
    }

    static func chunkID(_ task: TaskID) -> Int64? { if case let .chunk(id) = task { return id } else { return nil } }

    public var isComplete: Bool { open.isEmpty }

    public func capacity(of worker: ConnectedWorker) -> Int { worker.slots }

    public func takeTask(for worker: ConnectedWorker, now: Double) throws -> TaskID? {
        while let id = queue.last {
            guard open.contains(id), let text = texts[id] else {
                queue.removeLast()
                queued.remove(id)
                continue
            }
            guard allowance.grant(tokens: tokenEstimate(text), now: now) else { return nil }
            queue.removeLast()
            queued.remove(id)
            return .chunk(id)
        }
        return nil
    }

    public func messages(for lease: Lease, worker: ConnectedWorker) throws -> [Refinery_Cluster_Envelope.OneOf_Body] {
        guard let id = Self.chunkID(lease.task), let text = texts[id] else { throw ClusterError("no chunk for task \(lease.task)") }
        var task = Refinery_Cluster_GenerateTask()
        task.lease = lease.message
        task.chunkID = id
        task.text = text
        return [.generateTask(task)]
    }

    public func requeue(_ task: TaskID) {
        guard let id = Self.chunkID(task), open.contains(id), !queued.contains(id) else { return }
        queue.append(id)  // next out
        queued.insert(id)
    }

    public func isOpen(_ task: TaskID) -> Bool { Self.chunkID(task).map { open.contains($0) } ?? false }

    /// A result is stored whenever its chunk is still open, whatever its epoch (the
    /// coordinator checked that its sender was granted that epoch): the answer is as good as
    /// the current holder's will be, and it is paid for already.
    public func accept(_ stageResult: StageResult, lease: Lease, isCurrent: Bool, from worker: ConnectedWorker) throws -> ResultVerdict {
        guard case let .generation(result) = stageResult, let id = Self.chunkID(lease.task), id == result.chunkID else {
            return .dropped("not a generation result for \(lease.task)")
        }
        let taskID = lease.task.key
        let requests = result.requests.map {
            RequestRow(promptHash: $0.promptHash, succeeded: $0.status == "done", rawReply: $0.rawReply.isEmpty ? nil : $0.rawReply,
                       usage: Usage(promptTokens: Int($0.promptTokens), completionTokens: Int($0.completionTokens), cost: $0.cost),
                       error: $0.error.isEmpty ? nil : $0.error, errorClass: $0.errorClass.isEmpty ? nil : $0.errorClass,
                       startedAt: $0.startedAt, finishedAt: $0.finishedAt)
        }
        switch result.outcome {
        case "stopped":
            return .stopRun(result.reason)
        case "done", "failed":
            let isDone = result.outcome == "done"
            if isDone && result.pairs.isEmpty { return .dropped("a done result without pairs") }
            guard open.contains(id) else { return .dropped("chunk \(id) is answered already") }
            let stored = try store.commitChunkResult(chunkID: id, taskID: taskID, workerID: worker.id, done: isDone, requests: requests,
                                                     pairs: result.pairs.map { ($0.instruction, $0.answer) },
                                                     reason: result.reason, rawReply: result.rawReply.isEmpty ? nil : result.rawReply)
            open.remove(id)
            texts[id] = nil
            guard stored else { return .dropped("chunk \(id) is answered already") }
            allowance.spent += requests.map(\.usage.cost).reduce(0, +)
            answeredHere += 1
            if isDone { done += 1 } else { failed += 1 }
            return .stored
        default:
            return .dropped("unknown outcome \(result.outcome)")
        }
    }

    public func tick(now: Double) throws {
        if allowance.budgetSpent, let budget = allowance.budget, open.count > 0, queue.count == open.count {
            throw ClusterError(String(format: "the dollar budget is spent ($%.4f of $%.4f) with %d chunks left; raise generate.budget and start the coordinator again to continue", allowance.spent, budget, open.count))
        }
    }

    public var progress: (done: Int, total: Int) { (done + failed, total) }

    public var progressLine: String {
        let elapsed = max(Date().timeIntervalSince1970 - started, 1e-9)
        return String(format: "%d/%d chunks done, %d failed, %.2f chunks/s, $%.4f", done, total, failed, Double(answeredHere) / elapsed, allowance.spent)
    }
}
