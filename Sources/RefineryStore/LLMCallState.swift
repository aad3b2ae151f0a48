import Foundation
import GRDB

/// The LLM call cache of curation: one row per distinct call (by the hash of its endpoint and
/// request), with its answer once one arrived. A stage asks for its calls, the missing ones are
/// made (here or on workers) and stored one by one as they finish, so a killed run resumes
/// without asking any call twice, and a changed pipeline pays only for calls it never made.
/// Curation decisions gain the details behind them (scores, rationales, verdicts, models, cost)
/// and, for stages that rewrite samples, the rows that replace a sample.
enum LLMCallSchema {
    static let v7 = """
        CREATE TABLE llm_call (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            key TEXT NOT NULL UNIQUE,
            purpose TEXT NOT NULL,
            call TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'pending',
            reply TEXT, finish_reason TEXT, error TEXT,
            prompt_tokens INTEGER NOT NULL DEFAULT 0, completion_tokens INTEGER NOT NULL DEFAULT 0,
            cost REAL NOT NULL DEFAULT 0, attempts INTEGER NOT NULL DEFAULT 0,
            worker_id TEXT, created_at REAL NOT NULL, finished_at REAL);
        CREATE INDEX llm_call_status ON llm_call(status, id);
        ALTER TABLE curation_decision ADD COLUMN detail TEXT;
        ALTER TABLE curation_decision ADD COLUMN output_rows TEXT;
        """
    /// For watching a run: the class of a failed request or call (`RequestErrorClass`'s names),
    /// and when each training log row was written (step times and tokens per second).
    static let v8 = """
        ALTER TABLE request ADD COLUMN error_class TEXT;
        ALTER TABLE llm_call ADD COLUMN error_class TEXT;
        ALTER TABLE train_log ADD COLUMN logged_at REAL;
        """
}

/// A cached call as stored.
public struct LLMCallRecord: Sendable, Equatable {
    public enum Status: String, Sendable {
        case pending, answered, failed
    }

    public var id: Int64
    public var key: String
    /// What asked for it (`judge`, `evolve`, …).
    public var purpose: String
    /// The call (`LLMCall.json`, compact).
    public var call: String
    public var status: Status
    public var reply: String?
    public var finishReason: String?
    public var error: String?
    public var promptTokens: Int
    public var completionTokens: Int
    public var cost: Double
    public var attempts: Int
    public var workerID: String?
}

/// How a call ended, to be stored.
public struct LLMCallOutcomeRow: Sendable {
    public var answered: Bool
    public var reply: String?
    public var finishReason: String?
    public var error: String?
    /// The name of the error's class (`RequestErrorClass`) when the call failed.
    public var errorClass: String?
    public var promptTokens: Int
    public var completionTokens: Int
    public var cost: Double
    public var attempts: Int

    public init(answered: Bool, reply: String?, finishReason: String?, error: String?, errorClass: String? = nil, promptTokens: Int,
                completionTokens: Int, cost: Double, attempts: Int) {
        self.answered = answered
        self.reply = reply
        self.finishReason = finishReason
        self.error = error
        self.errorClass = errorClass
        self.promptTokens = promptTokens
        self.completionTokens = completionTokens
        self.cost = cost
        self.attempts = attempts
    }
}

extension RunStore {
    /// Registers calls (key, purpose, call text) not yet known, in one transaction; returns the
    /// stored record of every key, known or new.
    public func registerCalls(_ calls: [(key: String, purpose: String, call: String)]) throws -> [String: LLMCallRecord] {
        try write { db in
            let now = Date().timeIntervalSince1970
            for call in calls {
                try db.execute(sql: "INSERT INTO llm_call (key, purpose, call, created_at) VALUES (?, ?, ?, ?) ON CONFLICT(key) DO NOTHING",
                               arguments: [call.key, call.purpose, call.call, now])
            }
            return try Self.calls(db, keys: calls.map(\.key))
        }
    }

    /// The stored calls among `keys`, by key.
    public func calls(keys: [String]) throws -> [String: LLMCallRecord] {
        try read { db in try Self.calls(db, keys: keys) }
    }

    /// The stored calls with these ids, by id.
    public func calls(ids: [Int64]) throws -> [Int64: LLMCallRecord] {
        try read { db in
            var found: [Int64: LLMCallRecord] = [:]
            for start in stride(from: 0, to: ids.count, by: 500) {
                let batch = Array(ids[start..<min(ids.count, start + 500)])
                let marks = Array(repeating: "?", count: batch.count).joined(separator: ",")
                for row in try Row.fetchAll(db, sql: "SELECT * FROM llm_call WHERE id IN (\(marks))", arguments: StatementArguments(batch)) {
                    let record = Self.callRecord(row)
                    found[record.id] = record
                }
            }
            return found
        }
    }

    static func calls(_ db: Database, keys: [String]) throws -> [String: LLMCallRecord] {
        var found: [String: LLMCallRecord] = [:]
        for start in stride(from: 0, to: keys.count, by: 500) {
            let batch = Array(keys[start..<min(keys.count, start + 500)])
            let marks = Array(repeating: "?", count: batch.count).joined(separator: ",")
            for row in try Row.fetchAll(db, sql: "SELECT * FROM llm_call WHERE key IN (\(marks))", arguments: StatementArguments(batch)) {
                let record = callRecord(row)
                found[record.key] = record
            }
        }
        return found
    }

    static func callRecord(_ row: Row) -> LLMCallRecord {
        LLMCallRecord(id: row["id"], key: row["key"], purpose: row["purpose"], call: row["call"],
                      status: LLMCallRecord.Status(rawValue: row["status"]) ?? .pending, reply: row["reply"], finishReason: row["finish_reason"],
                      error: row["error"], promptTokens: row["prompt_tokens"], completionTokens: row["completion_tokens"], cost: row["cost"],
                      attempts: row["attempts"], workerID: row["worker_id"])
    }

    /// Stores how call `id` ended, if it is still pending; with `taskID`, the task's lease is
    /// closed in the same transaction. Returns false when it was answered already (nothing changes).
    @discardableResult
    public func commitCall(id: Int64, outcome: LLMCallOutcomeRow, workerID: String?, taskID: String? = nil) throws -> Bool {
        try write { db in
            try db.execute(sql: """
                UPDATE llm_call SET status = ?, reply = ?, finish_reason = ?, error = ?, error_class = ?, prompt_tokens = ?, completion_tokens = ?,
                    cost = ?, attempts = attempts + ?, worker_id = ?, finished_at = ?
                WHERE id = ? AND status = 'pending'
                """, arguments: [outcome.answered ? "answered" : "failed", outcome.reply, outcome.finishReason, outcome.error, outcome.errorClass,
                                 outcome.promptTokens, outcome.completionTokens, outcome.cost, outcome.attempts, workerID,
                                 Date().timeIntervalSince1970, id])
            let changed = db.changesCount > 0
            if changed, let taskID, let workerID { try Self.closeLease(db, taskID: taskID, workerID: workerID) }
            return changed
        }
    }

    /// Puts failed calls among `keys` back to pending (a later run tries them again; answered
    /// calls are never asked again). Returns how many.
    @discardableResult
    public func retryFailedCalls(keys: [String]) throws -> Int {
        try write { db in
            var count = 0
            for start in stride(from: 0, to: keys.count, by: 500) {
                let batch = Array(keys[start..<min(keys.count, start + 500)])
                let marks = Array(repeating: "?", count: batch.count).joined(separator: ",")
                try db.execute(sql: "UPDATE llm_call SET status = 'pending' WHERE status = 'failed' AND key IN (\(marks))", arguments: StatementArguments(batch))
                count += db.changesCount
            }
            return count
        }
    }

    /// Calls and dollars by purpose and status, for status and reports.
    public func callTotals() throws -> [(purpose: String, status: String, calls: Int, cost: Double)] {
        try read { db in
            try Row.fetchAll(db, sql: "SELECT purpose, status, count(*) AS n, coalesce(sum(cost), 0) AS cost FROM llm_call GROUP BY purpose, status ORDER BY purpose, status").map {
                (purpose: $0["purpose"], status: $0["status"], calls: $0["n"], cost: $0["cost"])
            }
        }
    }

    /// Dollars spent on curation calls so far.
    public func callCost() throws -> Double {
        try read { db in try Double.fetchOne(db, sql: "SELECT coalesce(sum(cost), 0) FROM llm_call") ?? 0 }
    }
}
