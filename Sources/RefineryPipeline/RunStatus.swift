import Foundation
import RefineryCore
import RefineryStore
import RefineryText

/// Where a run stands, read from its state file without writing to it. Holds no secret: the
/// API key is never in the state file.
public struct RunStatus: Sendable {
    public var stage: String
    public var stoppedReason: String?
    public var chunks: [ChunkStatus: Int]
    public var requests: Int
    /// LLM requests by outcome ("done", "failed", "sent"), by name.
    public var requestOutcomes: [(outcome: String, count: Int)]
    public var usage: Usage
    public var requestsLastMinute: Int
    public var workers: [WorkerRecord]
    public var failures: [(chunkID: Int64, reason: String)]
    public var lastTrainRow: String?
    public var lastEvalRow: String?
    public var checkpointStep: Int?
    /// The curation stages' LLM calls by purpose and status (answered, failed, pending), with their cost.
    public var curationCalls: [(purpose: String, status: String, calls: Int, cost: Double)]

    /// Reads the state file at `path` without writing to it.
    public static func read(path: String) throws -> RunStatus {
        let store = try RunStore(path: path, readOnly: true)
        let (requests, usage) = try store.totalUsage()
        let log = try store.trainLog()
        return RunStatus(
            stage: try store.meta("stage") ?? "generate",
            stoppedReason: try store.meta("stopped_reason"),
            chunks: try store.chunkCounts(), requests: requests, requestOutcomes: try store.requestOutcomes(), usage: usage,
            requestsLastMinute: try store.requestsFinished(since: Date().timeIntervalSince1970 - 60),
            workers: try store.workers(),
            failures: try store.failures().map { ($0.chunkID, $0.reason) },
            lastTrainRow: log.last { !$0.contains("eval_loss") }, lastEvalRow: log.last { $0.contains("eval_loss") },
            checkpointStep: try store.trainingCheckpointStep(), curationCalls: try store.callTotals())
    }

    /// A few lines for people.
    public var text: String {
        let total = chunks.values.reduce(0, +)
        var lines = ["stage: \(stage)" + (stoppedReason.map { " (stopped: \($0))" } ?? "")]
        lines.append("chunks: \(chunks[.done] ?? 0)/\(total) done, \(chunks[.failed] ?? 0) failed, \(chunks[.pending] ?? 0) pending")
        lines.append(String(format: "requests: %d (%d in the last minute, %.2f/s), %d+%d tokens, $%.4f", requests, requestsLastMinute,
                            Double(requestsLastMinute) / 60, usage.promptTokens, usage.completionTokens, usage.cost))
        if !curationCalls.isEmpty {
            let byPurpose = Dictionary(grouping: curationCalls, by: \.purpose).sorted { $0.key < $1.key }.map { purpose, rows in
                let counts = rows.sorted { $0.status < $1.status }.map { "\($0.calls) \($0.status)" }.joined(separator: ", ")
                return String(format: "%@ %@ ($%.4f)", purpose, counts, rows.map(\.cost).reduce(0, +))
            }
            lines.append("curation calls: " + byPurpose.joined(separator: "; "))
        }
        if let lastTrainRow { lines.append("training: \(lastTrainRow)" + (lastEvalRow.map { "; last eval \($0)" } ?? "")) }
        if let checkpointStep { lines.append("checkpoint: step \(checkpointStep)") }
        let connected = workers.filter { $0.state == "connected" }
        lines.append("workers: \(connected.count) connected, \(workers.count - connected.count) gone")
        for worker in workers {
            lines.append("  \(worker.id) \(worker.host) slots \(worker.slots) \(worker.state), \(worker.tasksDone) tasks, last seen \(Int(Date().timeIntervalSince1970 - worker.lastSeen)) s ago")
        }
        if !failures.isEmpty {
            lines.append("failures: \(failures.count)")
            for failure in failures.prefix(5) { lines.append("  chunk \(failure.chunkID): \(failure.reason)") }
        }
        return lines.joined(separator: "\n")
    }

    /// One JSON object (`status --json`).
    public var json: String {
        func row(_ text: String?) -> JSONValue { text.flatMap { try? JSONValue.parse($0) } ?? .null }
        return JSONValue.object([
            ("stage", .string(stage)), ("stopped_reason", stoppedReason.map { .string($0) } ?? .null),
            ("chunks", .object([("total", .int(chunks.values.reduce(0, +))), ("done", .int(chunks[.done] ?? 0)),
                                ("failed", .int(chunks[.failed] ?? 0)), ("pending", .int(chunks[.pending] ?? 0))])),
            ("requests", .int(requests)), ("requests_last_minute", .int(requestsLastMinute)),
            ("requests_by_outcome", .object(requestOutcomes.map { ($0.outcome, .int($0.count)) })),
            ("prompt_tokens", .int(usage.promptTokens)), ("completion_tokens", .int(usage.completionTokens)), ("cost", .double(usage.cost)),
            ("training", .object([("last", row(lastTrainRow)), ("last_eval", row(lastEvalRow)),
                                  ("checkpoint_step", checkpointStep.map { .int($0) } ?? .null)])),
            ("workers", .array(workers.map {
                .object([("id", .string($0.id)), ("host", .string($0.host)), ("slots", .int($0.slots)), ("state", .string($0.state)),
                         ("tasks_done", .int($0.tasksDone)), ("last_seen", .double($0.lastSeen))])
            })),
            ("failures", .array(failures.map { .object([("chunk", .int(Int($0.chunkID))), ("reason", .string($0.reason))]) })),
            ("curation_calls", .array(curationCalls.map {
                .object([("purpose", .string($0.purpose)), ("status", .string($0.status)), ("calls", .int($0.calls)), ("cost", .double($0.cost))])
            })),
        ]).compactText
    }
}
