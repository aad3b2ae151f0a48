import Foundation
import GRDB

/// Errors of the run store; messages say what, where, and how to fix it.
public struct StoreError: Error, CustomStringConvertible, Sendable, Equatable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// A chunk's life: waiting, answered (its samples stored), or given up after its retries.
public enum ChunkStatus: String, Sendable, Codable {
    case pending, done, failed
}

/// One chunk of an article, as stored.
public struct ChunkRecord: Sendable, Equatable {
    public var id: Int64
    public var articleID: String
    public var ordinal: Int
    public var text: String
    public var status: ChunkStatus
    public var attempts: Int
}

/// One instruction–answer pair with its lineage.
public struct SampleRecord: Sendable, Equatable {
    public var id: Int64
    public var chunkID: Int64
    public var articleID: String
    public var requestID: Int64
    public var ordinal: Int
    public var instruction: String
    public var answer: String
}

/// Token usage and cost of a request.
public struct Usage: Sendable, Equatable {
    public var promptTokens: Int
    public var completionTokens: Int
    public var cost: Double

    public init(promptTokens: Int = 0, completionTokens: Int = 0, cost: Double = 0) {
        self.promptTokens = promptTokens
        self.completionTokens = completionTokens
        self.cost = cost
    }
}

/// All run state in one SQLite file (WAL): articles, chunks, LLM requests and samples. Re-running
/// a command against the same file resumes: finished chunks are never sent again. API keys are
/// never given to the store.
public final class RunStore: Sendable {
    /// `PRAGMA application_id` of Refinery state files ("RFNY").
    public static let applicationID: Int32 = 0x5246_4E59
    public let path: String
    let queue: DatabaseQueue

    /// Opens or creates the state file. A file that is not SQLite, or a SQLite database of
    /// another application, is refused and left untouched. `readOnly` opens an existing state
    /// for reading (status, monitoring) without creating or migrating anything.
    public init(path: String, readOnly: Bool = false) throws {
        self.path = path
        if readOnly {
            guard FileManager.default.fileExists(atPath: path) else { throw StoreError("no state file at \(path)") }
            try Self.checkForeign(path)
            var configuration = Configuration()
            configuration.readonly = true
            configuration.busyMode = .timeout(10)
            do { queue = try DatabaseQueue(path: path, configuration: configuration) } catch let error as DatabaseError {
                throw StoreError("cannot read \(path): \(error.message ?? error.description)")
            }
            return
        }
        let parent = URL(fileURLWithPath: path).deletingLastPathComponent()
        do { try FileManager.default.createDirectory(at: parent, withIntermediateDirectories: true) } catch {
            throw StoreError("cannot create the folder \(parent.path) for \(path): \(error.localizedDescription)")
        }
        // Processes that open the same new file at once take turns creating it.
        let lock = try FileLock(path: path + ".lock")
        defer { lock.unlock() }
        let existed = FileManager.default.fileExists(atPath: path) && ((try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0) > 0
        if existed { try Self.checkForeign(path) }
        var configuration = Configuration()
        configuration.foreignKeysEnabled = true
        configuration.busyMode = .timeout(10)
        do {
            queue = try DatabaseQueue(path: path, configuration: configuration)
            // WAL with synchronous NORMAL: a killed process loses nothing committed; only a power
            // cut can lose the last transactions.
            try queue.writeWithoutTransaction { db in
                try db.execute(sql: "PRAGMA journal_mode = WAL")
                try db.execute(sql: "PRAGMA synchronous = NORMAL")
            }
            try queue.write { db in try db.execute(sql: "PRAGMA application_id = \(Self.applicationID)") }
            try Self.migrator.migrate(queue)
        } catch let error as DatabaseError {
            throw StoreError("cannot use \(path) as Refinery state: \(error.message ?? error.description)")
        }
    }

    /// Whether the state file at `path` exists and its creator has finished setting it up (every
    /// migration applied). A reader that races a run starting up sees `false`, not missing tables.
    public static func isReady(path: String) -> Bool {
        guard FileManager.default.fileExists(atPath: path) else { return false }
        var configuration = Configuration()
        configuration.readonly = true
        configuration.busyMode = .timeout(10)
        guard let probe = try? DatabaseQueue(path: path, configuration: configuration) else { return false }
        defer { try? probe.close() }
        return (try? probe.read { db in try migrator.hasCompletedMigrations(db) }) ?? false
    }

    /// Refuses a file that is not a Refinery state database, without writing to it.
    static func checkForeign(_ path: String) throws {
        var configuration = Configuration()
        configuration.readonly = true
        configuration.busyMode = .timeout(10)
        do {
            let probe = try DatabaseQueue(path: path, configuration: configuration)
            let (id, tables) = try probe.read { db -> (Int32, Int) in
                let id = try Int32.fetchOne(db, sql: "PRAGMA application_id") ?? 0
                let tables = try Int.fetchOne(db, sql: "SELECT count(*) FROM sqlite_master WHERE type = 'table'") ?? 0
                return (id, tables)
            }
            try probe.close()
            if id != applicationID && (id != 0 || tables > 0) {
                throw StoreError("\(path) is a SQLite database of another application (application_id \(id)); Refinery will not touch it. Give --state a new file name.")
            }
        } catch let error as DatabaseError where error.resultCode == .SQLITE_BUSY || error.resultCode == .SQLITE_LOCKED {
            throw StoreError("\(path) stays locked by another process; try again when it is done")
        } catch let error as DatabaseError {
            throw StoreError("\(path) is not a readable SQLite database (\(error.message ?? "corrupt")); Refinery will not overwrite it. Move it away or give --state a new file name.")
        }
    }

    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.execute(sql: """
                CREATE TABLE article (
                    id TEXT PRIMARY KEY, platform TEXT, author_id TEXT, author_name TEXT, link TEXT,
                    content_hash TEXT NOT NULL, characters INTEGER NOT NULL);
                CREATE TABLE chunk (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    article_id TEXT NOT NULL REFERENCES article(id),
                    ordinal INTEGER NOT NULL, text TEXT NOT NULL,
                    status TEXT NOT NULL DEFAULT 'pending', attempts INTEGER NOT NULL DEFAULT 0,
                    error TEXT, raw_reply TEXT,
                    UNIQUE(article_id, ordinal));
                CREATE INDEX chunk_status ON chunk(status, id);
                CREATE TABLE request (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    chunk_id INTEGER NOT NULL REFERENCES chunk(id),
                    prompt_hash TEXT NOT NULL, attempt INTEGER NOT NULL, status TEXT NOT NULL,
                    raw_reply TEXT, prompt_tokens INTEGER NOT NULL DEFAULT 0, completion_tokens INTEGER NOT NULL DEFAULT 0,
                    cost REAL NOT NULL DEFAULT 0, error TEXT, created_at REAL NOT NULL, finished_at REAL);
                CREATE TABLE sample (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    chunk_id INTEGER NOT NULL REFERENCES chunk(id),
                    request_id INTEGER NOT NULL REFERENCES request(id),
                    ordinal INTEGER NOT NULL, instruction TEXT NOT NULL, answer TEXT NOT NULL,
                    UNIQUE(chunk_id, ordinal));
                CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
                """)
        }
        migrator.registerMigration("v2-cluster") { db in
            try db.execute(sql: ClusterSchema.v2)
        }
        migrator.registerMigration("v3-lease-grants") { db in
            try db.execute(sql: ClusterSchema.v3)
        }
        migrator.registerMigration("v4-curation") { db in
            try db.execute(sql: CurationSchema.v4)
        }
        migrator.registerMigration("v5-minhash-signatures") { db in
            try db.execute(sql: SignatureSchema.v5)
        }
        migrator.registerMigration("v6-embeddings") { db in
            try db.execute(sql: EmbeddingSchema.v6)
        }
        migrator.registerMigration("v7-llm-calls") { db in
            try db.execute(sql: LLMCallSchema.v7)
        }
        migrator.registerMigration("v8-error-classes") { db in
            try db.execute(sql: LLMCallSchema.v8)
        }
        return migrator
    }

    // MARK: Ingest

    /// Stores an article and its chunks unless an article with this id is already stored.
    /// Returns false when it was already there (a rerun): its chunks keep their status.
    @discardableResult
    public func addArticle(id: String, contentHash: String, characters: Int, platform: String?, authorID: String?,
                           authorName: String?, link: String?, chunks: [String]) throws -> Bool {
        try write { db in
            if try Bool.fetchOne(db, sql: "SELECT 1 FROM article WHERE id = ?", arguments: [id]) == true { return false }
            try db.execute(sql: "INSERT INTO article (id, platform, author_id, author_name, link, content_hash, characters) VALUES (?, ?, ?, ?, ?, ?, ?)",
                           arguments: [id, platform, authorID, authorName, link, contentHash, characters])
            for (ordinal, text) in chunks.enumerated() {
                try db.execute(sql: "INSERT INTO chunk (article_id, ordinal, text) VALUES (?, ?, ?)", arguments: [id, ordinal, text])
            }
            return true
        }
    }

    /// A value stored under `key` in the run's metadata.
    public func meta(_ key: String) throws -> String? {
        try read { db in try String.fetchOne(db, sql: "SELECT value FROM meta WHERE key = ?", arguments: [key]) }
    }

    /// Forgets the value under `key`, if any.
    public func removeMeta(_ key: String) throws {
        try write { db in try db.execute(sql: "DELETE FROM meta WHERE key = ?", arguments: [key]) }
    }

    /// Stores `value` under `key`.
    public func setMeta(_ key: String, _ value: String) throws {
        try write { db in try db.execute(sql: "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value", arguments: [key, value]) }
    }

    // MARK: Chunks and requests

    /// Chunks still pending, in id order.
    public func pendingChunks(limit: Int = .max) throws -> [ChunkRecord] {
        try read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM chunk WHERE status = 'pending' ORDER BY id LIMIT ?", arguments: [limit]).map(Self.chunk)
        }
    }

    /// Every chunk, in id order.
    public func allChunks() throws -> [ChunkRecord] {
        try read { db in try Row.fetchAll(db, sql: "SELECT * FROM chunk ORDER BY id").map(Self.chunk) }
    }

    static func chunk(_ row: Row) -> ChunkRecord {
        ChunkRecord(id: row["id"], articleID: row["article_id"], ordinal: row["ordinal"], text: row["text"],
                    status: ChunkStatus(rawValue: row["status"]) ?? .pending, attempts: row["attempts"])
    }

    /// Records that a request for `chunkID` is about to be sent; returns its id.
    public func beginRequest(chunkID: Int64, promptHash: String) throws -> Int64 {
        try write { db in
            try db.execute(sql: "UPDATE chunk SET attempts = attempts + 1 WHERE id = ?", arguments: [chunkID])
            let attempt = try Int.fetchOne(db, sql: "SELECT attempts FROM chunk WHERE id = ?", arguments: [chunkID]) ?? 1
            try db.execute(sql: "INSERT INTO request (chunk_id, prompt_hash, attempt, status, created_at) VALUES (?, ?, ?, 'sent', ?)",
                           arguments: [chunkID, promptHash, attempt, Date().timeIntervalSince1970])
            return db.lastInsertedRowID
        }
    }

    /// Records a request that did not yield samples (HTTP error, invalid reply…), with the name
    /// of its error class (`RequestErrorClass` in RefineryLLM).
    public func failRequest(_ requestID: Int64, error: String, errorClass: String?, rawReply: String?, usage: Usage) throws {
        try write { db in
            try db.execute(sql: """
                UPDATE request SET status = 'failed', error = ?, error_class = ?, raw_reply = ?, prompt_tokens = ?, completion_tokens = ?,
                cost = ?, finished_at = ? WHERE id = ?
                """, arguments: [error, errorClass, rawReply, usage.promptTokens, usage.completionTokens, usage.cost, Date().timeIntervalSince1970,
                                 requestID])
        }
    }

    /// In one transaction: stores the pairs (a chunk's samples are never stored twice), marks
    /// the request and the chunk done. Idempotent.
    public func completeChunk(_ chunkID: Int64, requestID: Int64, rawReply: String, usage: Usage, pairs: [(String, String)]) throws {
        try write { db in
            for (ordinal, pair) in pairs.enumerated() {
                try db.execute(sql: "INSERT INTO sample (chunk_id, request_id, ordinal, instruction, answer) VALUES (?, ?, ?, ?, ?) ON CONFLICT(chunk_id, ordinal) DO NOTHING",
                               arguments: [chunkID, requestID, ordinal, pair.0, pair.1])
            }
            try db.execute(sql: """
                UPDATE request SET status = 'done', raw_reply = ?, prompt_tokens = ?, completion_tokens = ?, cost = ?, finished_at = ? WHERE id = ?
                """, arguments: [rawReply, usage.promptTokens, usage.completionTokens, usage.cost, Date().timeIntervalSince1970, requestID])
            try db.execute(sql: "UPDATE chunk SET status = 'done', error = NULL WHERE id = ?", arguments: [chunkID])
        }
    }

    /// Gives a chunk up, keeping the reason and the last raw reply.
    public func failChunk(_ chunkID: Int64, reason: String, rawReply: String?) throws {
        try write { db in
            try db.execute(sql: "UPDATE chunk SET status = 'failed', error = ?, raw_reply = ? WHERE id = ?", arguments: [reason, rawReply, chunkID])
        }
    }

    /// Puts failed chunks back in the queue (`--retry-failed`).
    public func requeueFailed() throws -> Int {
        try write { db in
            try db.execute(sql: "UPDATE chunk SET status = 'pending', attempts = 0 WHERE status = 'failed'")
            return db.changesCount
        }
    }

    // MARK: Results

    /// Every sample with its lineage, in chunk and pair order.
    public func samples() throws -> [SampleRecord] {
        try read { db in
            try Row.fetchAll(db, sql: """
                SELECT sample.*, chunk.article_id FROM sample JOIN chunk ON chunk.id = sample.chunk_id ORDER BY sample.chunk_id, sample.ordinal
                """).map { row in
                SampleRecord(id: row["id"], chunkID: row["chunk_id"], articleID: row["article_id"], requestID: row["request_id"],
                             ordinal: row["ordinal"], instruction: row["instruction"], answer: row["answer"])
            }
        }
    }

    /// Chunk counts by status.
    public func chunkCounts() throws -> [ChunkStatus: Int] {
        try read { db in
            var counts: [ChunkStatus: Int] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT status, count(*) AS n FROM chunk GROUP BY status") {
                if let status = ChunkStatus(rawValue: row["status"]) { counts[status] = row["n"] }
            }
            return counts
        }
    }

    /// Why the failed chunk with the highest id failed (nil: none failed).
    public func lastChunkFailure() throws -> String? {
        try read { db in
            try String.fetchOne(db, sql: "SELECT error FROM chunk WHERE status = 'failed' ORDER BY id DESC LIMIT 1")
        }
    }

    /// Usage and cost summed over all requests.
    public func totalUsage() throws -> (requests: Int, usage: Usage) {
        try read { db in
            let row = try Row.fetchOne(db, sql: "SELECT count(*) AS n, coalesce(sum(prompt_tokens), 0) AS p, coalesce(sum(completion_tokens), 0) AS c, coalesce(sum(cost), 0) AS cost FROM request")
            return (row?["n"] ?? 0, Usage(promptTokens: row?["p"] ?? 0, completionTokens: row?["c"] ?? 0, cost: row?["cost"] ?? 0))
        }
    }

    /// LLM requests by outcome as recorded ("done", "failed", or "sent" while in flight), by name.
    public func requestOutcomes() throws -> [(outcome: String, count: Int)] {
        try read { db in
            try Row.fetchAll(db, sql: "SELECT status, count(*) AS n FROM request GROUP BY status ORDER BY status").map { ($0["status"], $0["n"]) }
        }
    }

    /// Failed chunks with their reasons.
    public func failures() throws -> [(chunkID: Int64, reason: String, rawReply: String?)] {
        try read { db in
            try Row.fetchAll(db, sql: "SELECT id, error, raw_reply FROM chunk WHERE status = 'failed' ORDER BY id").map {
                (chunkID: $0["id"], reason: $0["error"] ?? "", rawReply: $0["raw_reply"])
            }
        }
    }

    // MARK: Plumbing

    func read<T>(_ body: (Database) throws -> T) throws -> T {
        do { return try queue.read(body) } catch let error as DatabaseError {
            throw StoreError("\(path): \(error.message ?? error.description)")
        }
    }

    func write<T>(_ body: (Database) throws -> T) throws -> T {
        do { return try queue.write(body) } catch let error as DatabaseError {
            throw StoreError("\(path): \(error.message ?? error.description)")
        }
    }
}

/// An exclusive advisory lock on a file (flock), held by this process until `unlock`.
final class FileLock {
    private let descriptor: Int32

    init(path: String) throws {
        descriptor = open(path, O_CREAT | O_RDWR, 0o644)
        guard descriptor >= 0 else { throw StoreError("cannot open the lock file \(path): \(String(cString: strerror(errno)))") }
        guard flock(descriptor, LOCK_EX) == 0 else {
            close(descriptor)
            throw StoreError("cannot lock \(path): \(String(cString: strerror(errno)))")
        }
    }

    func unlock() {
        flock(descriptor, LOCK_UN)
        close(descriptor)
    }
}
