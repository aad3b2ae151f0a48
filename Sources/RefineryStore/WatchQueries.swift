import Foundation
import GRDB

/// Reads for watching a run (the dashboard, `/metrics`, `status`): rates, error classes, who
/// holds which task, and when training rows were written. Read-only, cheap, indexed where it counts.
/// They also read state files written before the columns they use existed (a read-only open
/// never migrates): a missing column reads as NULL.
extension RunStore {
    /// `column` of `table` when the file has it, else `NULL` (for older state files).
    private static func column(_ db: Database, _ table: String, _ column: String) throws -> String {
        try db.tableExists(table) && db.columns(in: table).contains { $0.name == column } ? column : "NULL"
    }

    /// Failed LLM requests (generation attempts, and curation calls that ended failed) by error
    /// class, most frequent first; "other" for failures recorded without one (older state files).
    public func failuresByErrorClass() throws -> [(errorClass: String, count: Int)] {
        try read { db in
            let calls = try db.tableExists("llm_call")
                ? "UNION ALL SELECT \(try Self.column(db, "llm_call", "error_class")) AS error_class FROM llm_call WHERE status = 'failed'" : ""
            return try Row.fetchAll(db, sql: """
                SELECT coalesce(error_class, 'other') AS class, count(*) AS n FROM (
                    SELECT \(try Self.column(db, "request", "error_class")) AS error_class FROM request WHERE status = 'failed' \(calls))
                GROUP BY class ORDER BY n DESC, class
                """).map { ($0["class"], $0["n"]) }
        }
    }

    /// Generation requests that yielded samples since `time` (a chunk done each), and curation
    /// calls answered since then: the run's current pace.
    public func finishedWork(since time: Double) throws -> (chunks: Int, calls: Int) {
        try read { db in
            let chunks = try Int.fetchOne(db, sql: "SELECT count(*) FROM request WHERE status = 'done' AND finished_at >= ?", arguments: [time]) ?? 0
            let calls = try db.tableExists("llm_call")
                ? Int.fetchOne(db, sql: "SELECT count(*) FROM llm_call WHERE status = 'answered' AND finished_at >= ?", arguments: [time]) ?? 0 : 0
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
            guard try db.tableExists("train_log") else { return [] }
            return try Row.fetchAll(db, sql: "SELECT row, \(try Self.column(db, "train_log", "logged_at")) AS logged_at FROM train_log ORDER BY step, kind DESC")
                .map { ($0["row"], $0["logged_at"]) }
        }
    }
}
