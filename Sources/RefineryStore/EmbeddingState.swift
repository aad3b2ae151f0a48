import Foundation
import GRDB

/// The embedding cache: one vector per (embedding model, text) — so curation that embeds the
/// same samples again (a rerun, another threshold, a resumed stage) never recomputes or re-pays them.
enum EmbeddingSchema {
    static let v6 = """
        CREATE TABLE embedding (
            model TEXT NOT NULL, text_digest TEXT NOT NULL, vector BLOB NOT NULL,
            PRIMARY KEY (model, text_digest));
        """
}

extension RunStore {
    /// The cached vectors of `model` (an embedder's key) for the given text digests, by digest.
    public func embeddings(model: String, digests: [String]) throws -> [String: [Float]] {
        try read { db in
            var found: [String: [Float]] = [:]
            for start in stride(from: 0, to: digests.count, by: 500) {
                let batch = Array(digests[start..<min(digests.count, start + 500)])
                let marks = Array(repeating: "?", count: batch.count).joined(separator: ",")
                let rows = try Row.fetchAll(db, sql: "SELECT text_digest, vector FROM embedding WHERE model = ? AND text_digest IN (\(marks))",
                                            arguments: StatementArguments([model] + batch))
                for row in rows {
                    let data: Data = row["vector"]
                    // Copied, not rebound: a blob's bytes need not be aligned for Float.
                    var values = [Float](repeating: 0, count: data.count / 4)
                    _ = values.withUnsafeMutableBytes { data.copyBytes(to: $0) }
                    found[row["text_digest"]] = values
                }
            }
            return found
        }
    }

    /// Stores vectors of `model` (digest → vector) in one transaction, replacing any under the same digest.
    public func storeEmbeddings(model: String, _ vectors: [(digest: String, vector: [Float])]) throws {
        try write { db in
            for (digest, vector) in vectors {
                let data = vector.withUnsafeBufferPointer { Data(buffer: $0) }
                try db.execute(sql: "INSERT INTO embedding (model, text_digest, vector) VALUES (?, ?, ?) ON CONFLICT DO UPDATE SET vector = excluded.vector",
                               arguments: [model, digest, data])
            }
        }
    }

    /// How many vectors of `model` are cached.
    public func embeddingCount(model: String) throws -> Int {
        try read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM embedding WHERE model = ?", arguments: [model]) ?? 0 }
    }
}
