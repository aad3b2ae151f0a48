import Foundation
import GRDB

/// Reads for watching a run (the dashboard, `/metrics`, `status`): rates, error classes, who
/// holds which task, and when training rows were written. Read-only, cheap, indexed where it counts.
extension RunStore {
    /// Failed LLM requests (generation attempts, and curation calls that ended failed) by error
    /// class, most frequent first; "other" for failures recorded without one (older state files).
    public func failuresByErrorClass() throws -> [(errorClass: String, count: Int)] {
        try read { db in
            try Row.fetchAll(db, sql: """
                SELECT coalesce(error_class, 'other') AS class, count(*) AS n FROM (
                    SELECT error_class FROM request WHERE status = 'failed'
                    UNION ALL SELECT error_class FROM llm_call WHERE status = 'failed')
                GROUP BY class ORDER BY n DESC, class
                """).map { ($0["class"], $0["n"]) }
        }
    }

    /// Generation requests that yielded samples since `time` (a chunk done each), and curation
    /// calls answered since then: the run's current pace.
    public func finishedWork(since time: Double) throws -> (chunks: Int, calls: Int) {
        try read { db in
            let chunks = try Int.fetchOne(db, sql: "SELECT count(*) FROM request WHERE status = 'done' AND finished_at >= ?", arguments: [time]) ?? 0
            let calls = try Int.fetchOne(db, sql: "SELECT count(*) FROM llm_call WHERE status = 'answered' AND finished_at >= ?", arguments: [time]) ?? 0
            return (chunks, calls)
        }
    }

    /// Records the run's dollar budget (nil: none) for the dashboard and `status`.
    public func recordBudget(_ budget: Double?) throws {
        if let budget { try setMeta("budget", String(budget)) } else { try removeMeta("budget") }
    }

    /// The dollar budget the running stage was given, if any.
    public func budget() throws -> Double? { try meta("budget").flatMap(Double.init) }

    /// The tasks each worker holds a lease on now (lease rows with a holder), by worker id.
    public func heldTasks() throws -> [String: [String]] {
        try read { db in
            var held: [String: [String]] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT task_id, worker_id FROM lease WHERE worker_id IS NOT NULL ORDER BY task_id") {
                held[row["worker_id"], default: []].append(row["task_id"])
            }
            return held
        }
    }

    /// The training log's rows in step order (train before eval) with the time each was
    /// written (nil for rows of state files from before that was recorded).
    public func timedTrainLog() throws -> [(row: String, loggedAt: Double?)] {
        try read { db in
            try Row.fetchAll(db, sql: "SELECT row, logged_at FROM train_log ORDER BY step, kind DESC").map { ($0["row"], $0["logged_at"]) }
        }
    }
}
