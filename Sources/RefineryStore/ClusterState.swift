import Foundation
import GRDB

/// Tables of the cluster: task leases, workers, training checkpoints and the training log.
enum ClusterSchema {
    static let v2 = """
        CREATE TABLE lease (
            task_id TEXT PRIMARY KEY, epoch INTEGER NOT NULL, worker_id TEXT, expires_at REAL);
        CREATE TABLE worker (
            id TEXT PRIMARY KEY, host TEXT NOT NULL, slots INTEGER NOT NULL, first_seen REAL NOT NULL,
            last_seen REAL NOT NULL, tasks_done INTEGER NOT NULL DEFAULT 0, state TEXT NOT NULL);
        CREATE TABLE train_checkpoint (step INTEGER PRIMARY KEY, state TEXT NOT NULL);
        CREATE TABLE train_tensor (
            step INTEGER NOT NULL REFERENCES train_checkpoint(step) ON DELETE CASCADE,
            name TEXT NOT NULL, data BLOB NOT NULL, PRIMARY KEY (step, name));
        CREATE TABLE train_log (step INTEGER NOT NULL, kind TEXT NOT NULL, row TEXT NOT NULL, PRIMARY KEY (step, kind));
        """
    /// Every (task, epoch) ever granted and to whom: a result is accepted only from a worker that
    /// was granted its lease, also after a restart.
    static let v3 = """
        CREATE TABLE lease_grant (
            task_id TEXT NOT NULL, epoch INTEGER NOT NULL, worker_id TEXT NOT NULL, PRIMARY KEY (task_id, epoch));
        """
}

/// A task handed to a worker: `(taskID, epoch)`; a result for another epoch is stale.
public struct LeaseRecord: Sendable, Equatable {
    public var taskID: String
    public var epoch: Int64
    public var workerID: String?
    public var expiresAt: Double?

    public init(taskID: String, epoch: Int64, workerID: String?, expiresAt: Double?) {
        self.taskID = taskID
        self.epoch = epoch
        self.workerID = workerID
        self.expiresAt = expiresAt
    }
}

/// A worker as the coordinator last saw it.
public struct WorkerRecord: Sendable, Equatable {
    public var id: String
    public var host: String
    public var slots: Int
    public var firstSeen: Double
    public var lastSeen: Double
    public var tasksDone: Int
    /// "connected" or "gone".
    public var state: String
}

/// One LLM request of a chunk, made by a worker and committed by the coordinator.
public struct RequestRow: Sendable, Equatable {
    public var promptHash: String
    public var succeeded: Bool
    public var rawReply: String?
    public var usage: Usage
    public var error: String?
    /// The name of the failure's class (`RequestErrorClass` in RefineryLLM).
    public var errorClass: String?
    public var startedAt: Double
    public var finishedAt: Double

    public init(promptHash: String, succeeded: Bool, rawReply: String?, usage: Usage, error: String?, errorClass: String? = nil,
                startedAt: Double, finishedAt: Double) {
        self.errorClass = errorClass
        self.promptHash = promptHash
        self.succeeded = succeeded
        self.rawReply = rawReply
        self.usage = usage
        self.error = error
        self.startedAt = startedAt
        self.finishedAt = finishedAt
    }
}

/// A saved training state: the step, a JSON description, and named tensors (raw float32 bytes).
public struct TrainingCheckpointRecord: Sendable {
    public var step: Int
    public var state: String
    public var tensors: [String: [UInt8]]
}

extension RunStore {
    // MARK: Leases

    /// Every lease row (held or released; the epoch of a task only grows).
    public func leases() throws -> [LeaseRecord] {
        try read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM lease ORDER BY task_id").map {
                LeaseRecord(taskID: $0["task_id"], epoch: $0["epoch"], workerID: $0["worker_id"], expiresAt: $0["expires_at"])
            }
        }
    }

    /// Hands `taskID` to `workerID` under a new epoch; returns the lease.
    public func grantLease(taskID: String, workerID: String, expiresAt: Double) throws -> LeaseRecord {
        try write { db in
            try db.execute(sql: """
                INSERT INTO lease (task_id, epoch, worker_id, expires_at) VALUES (?, 1, ?, ?)
                ON CONFLICT(task_id) DO UPDATE SET epoch = epoch + 1, worker_id = excluded.worker_id, expires_at = excluded.expires_at
                """, arguments: [taskID, workerID, expiresAt])
            let epoch = try Int64.fetchOne(db, sql: "SELECT epoch FROM lease WHERE task_id = ?", arguments: [taskID]) ?? 1
            try db.execute(sql: "INSERT OR REPLACE INTO lease_grant (task_id, epoch, worker_id) VALUES (?, ?, ?)", arguments: [taskID, epoch, workerID])
            return LeaseRecord(taskID: taskID, epoch: epoch, workerID: workerID, expiresAt: expiresAt)
        }
    }

    /// Whether `(taskID, epoch)` was ever granted to `workerID`.
    public func wasGranted(taskID: String, epoch: Int64, to workerID: String) throws -> Bool {
        try read { db in
            try String.fetchOne(db, sql: "SELECT worker_id FROM lease_grant WHERE task_id = ? AND epoch = ?", arguments: [taskID, epoch]) == workerID
        }
    }

    /// A training task answered: its lease ends and its worker is credited, in one transaction
    /// (a restarted coordinator then finds the lease free, not held).
    public func commitTaskResult(taskID: String, workerID: String) throws {
        try write { db in try Self.closeLease(db, taskID: taskID, workerID: workerID) }
    }

    /// Ends a task's lease and credits its worker (inside a transaction that stores the result).
    static func closeLease(_ db: Database, taskID: String, workerID: String) throws {
        try db.execute(sql: "UPDATE lease SET worker_id = NULL, expires_at = NULL WHERE task_id = ?", arguments: [taskID])
        try db.execute(sql: "UPDATE worker SET tasks_done = tasks_done + 1 WHERE id = ?", arguments: [workerID])
    }

    /// Ends leases without a result (dead worker, timeout): the tasks go back to the queue.
    public func releaseLeases(_ taskIDs: [String]) throws {
        guard !taskIDs.isEmpty else { return }
        try write { db in
            for id in taskIDs { try db.execute(sql: "UPDATE lease SET worker_id = NULL, expires_at = NULL WHERE task_id = ?", arguments: [id]) }
        }
    }

    /// Moves the expiry of `workerID`'s leases (it is alive and still working on them).
    public func extendLeases(workerID: String, taskIDs: [String], expiresAt: Double) throws {
        guard !taskIDs.isEmpty else { return }
        try write { db in
            for id in taskIDs {
                try db.execute(sql: "UPDATE lease SET expires_at = ?, worker_id = ? WHERE task_id = ?", arguments: [expiresAt, workerID, id])
            }
        }
    }

    // MARK: Workers

    /// Records a worker's hello.
    public func registerWorker(id: String, host: String, slots: Int, at time: Double) throws {
        try write { db in
            try db.execute(sql: """
                INSERT INTO worker (id, host, slots, first_seen, last_seen, state) VALUES (?, ?, ?, ?, ?, 'connected')
                ON CONFLICT(id) DO UPDATE SET host = excluded.host, slots = excluded.slots, last_seen = excluded.last_seen, state = 'connected'
                """, arguments: [id, host, slots, time, time])
        }
    }

    /// Records when workers were last heard from, and which are gone.
    public func updateWorkers(lastSeen: [String: Double], gone: [String]) throws {
        guard !lastSeen.isEmpty || !gone.isEmpty else { return }
        try write { db in
            for (id, time) in lastSeen { try db.execute(sql: "UPDATE worker SET last_seen = ? WHERE id = ?", arguments: [time, id]) }
            for id in gone { try db.execute(sql: "UPDATE worker SET state = 'gone' WHERE id = ?", arguments: [id]) }
        }
    }

    /// Marks every worker gone (a coordinator starting up knows none yet).
    public func forgetWorkers() throws {
        try write { db in try db.execute(sql: "UPDATE worker SET state = 'gone'") }
    }

    public func workers() throws -> [WorkerRecord] {
        try read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM worker ORDER BY first_seen, id").map {
                WorkerRecord(id: $0["id"], host: $0["host"], slots: $0["slots"], firstSeen: $0["first_seen"], lastSeen: $0["last_seen"],
                             tasksDone: $0["tasks_done"], state: $0["state"])
            }
        }
    }

    // MARK: Generation results

    /// Commits a worker's outcome for a chunk in one transaction: its requests, its pairs (done)
    /// or its failure, the lease released, the worker's count. Idempotent: a chunk already done
    /// or failed keeps its result and nothing is written. Returns whether it was stored.
    public func commitChunkResult(chunkID: Int64, taskID: String, workerID: String, done: Bool, requests: [RequestRow],
                                  pairs: [(String, String)], reason: String?, rawReply: String?) throws -> Bool {
        try write { db in
            let status = try String.fetchOne(db, sql: "SELECT status FROM chunk WHERE id = ?", arguments: [chunkID])
            guard status == ChunkStatus.pending.rawValue else { return false }
            var lastRequestID: Int64 = 0
            for (index, request) in requests.enumerated() {
                let attempt = try (Int.fetchOne(db, sql: "SELECT attempts FROM chunk WHERE id = ?", arguments: [chunkID]) ?? 0) + 1
                try db.execute(sql: "UPDATE chunk SET attempts = ? WHERE id = ?", arguments: [attempt, chunkID])
                try db.execute(sql: """
                    INSERT INTO request (chunk_id, prompt_hash, attempt, status, raw_reply, prompt_tokens, completion_tokens, cost, error, error_class,
                                         created_at, finished_at)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """, arguments: [chunkID, request.promptHash, attempt, request.succeeded ? "done" : "failed", request.rawReply,
                                     request.usage.promptTokens, request.usage.completionTokens, request.usage.cost, request.error, request.errorClass,
                                     request.startedAt, request.finishedAt])
                if index == requests.count - 1 { lastRequestID = db.lastInsertedRowID }
            }
            if done {
                for (ordinal, pair) in pairs.enumerated() {
                    try db.execute(sql: "INSERT INTO sample (chunk_id, request_id, ordinal, instruction, answer) VALUES (?, ?, ?, ?, ?) ON CONFLICT(chunk_id, ordinal) DO NOTHING",
                                   arguments: [chunkID, lastRequestID, ordinal, pair.0, pair.1])
                }
                try db.execute(sql: "UPDATE chunk SET status = 'done', error = NULL WHERE id = ?", arguments: [chunkID])
            } else {
                try db.execute(sql: "UPDATE chunk SET status = 'failed', error = ?, raw_reply = ? WHERE id = ?", arguments: [reason ?? "failed", rawReply, chunkID])
            }
            try Self.closeLease(db, taskID: taskID, workerID: workerID)
            return true
        }
    }

    /// Requests recorded in the last `seconds` (for throughput in `status`).
    public func requestsFinished(since time: Double) throws -> Int {
        try read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM request WHERE finished_at >= ?", arguments: [time]) ?? 0 }
    }

    // MARK: Training

    /// Saves a training checkpoint in one transaction and drops older ones.
    public func saveTrainingCheckpoint(step: Int, state: String, tensors: [(String, [UInt8])]) throws {
        try write { db in
            try db.execute(sql: "INSERT OR REPLACE INTO train_checkpoint (step, state) VALUES (?, ?)", arguments: [step, state])
            try db.execute(sql: "DELETE FROM train_tensor WHERE step = ?", arguments: [step])
            for (name, bytes) in tensors {
                try db.execute(sql: "INSERT INTO train_tensor (step, name, data) VALUES (?, ?, ?)", arguments: [step, name, Data(bytes)])
            }
            try db.execute(sql: "DELETE FROM train_tensor WHERE step < ?", arguments: [step])
            try db.execute(sql: "DELETE FROM train_checkpoint WHERE step < ?", arguments: [step])
        }
    }

    /// The newest training checkpoint, if any.
    public func latestTrainingCheckpoint() throws -> TrainingCheckpointRecord? {
        try read { db in
            guard let row = try Row.fetchOne(db, sql: "SELECT * FROM train_checkpoint ORDER BY step DESC LIMIT 1") else { return nil }
            let step: Int = row["step"]
            var tensors: [String: [UInt8]] = [:]
            for tensor in try Row.fetchAll(db, sql: "SELECT name, data FROM train_tensor WHERE step = ?", arguments: [step]) {
                let data: Data = tensor["data"]
                tensors[tensor["name"]] = Array(data)
            }
            return TrainingCheckpointRecord(step: step, state: row["state"], tensors: tensors)
        }
    }

    /// Appends (or replaces) a `train_log.jsonl` row of `kind` ("train" or "eval") for `step`.
    public func putTrainLog(step: Int, kind: String, row: String) throws {
        try write { db in
            try db.execute(sql: "INSERT OR REPLACE INTO train_log (step, kind, row, logged_at) VALUES (?, ?, ?, ?)",
                           arguments: [step, kind, row, Date().timeIntervalSince1970])
        }
    }

    /// Drops log rows after `step` (they are recomputed after a resume).
    public func truncateTrainLog(after step: Int) throws {
        try write { db in try db.execute(sql: "DELETE FROM train_log WHERE step > ?", arguments: [step]) }
    }

    /// The log rows in step order, train before eval.
    public func trainLog() throws -> [String] {
        try read { db in try String.fetchAll(db, sql: "SELECT row FROM train_log ORDER BY step, kind DESC") }
    }
}

extension RunStore {
    /// The step of the newest training checkpoint (without loading its tensors).
    public func trainingCheckpointStep() throws -> Int? {
        try read { db in try Int.fetchOne(db, sql: "SELECT max(step) FROM train_checkpoint") }
    }
}
