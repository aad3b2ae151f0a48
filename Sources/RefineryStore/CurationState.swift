import Foundation
import GRDB

/// Tables of curation: each stage run (its settings and the digest of its input) and every
/// decision it made about a sample, so a rerun with the same settings and input reuses them and
/// `refinery data why` can say why a sample is gone or kept.
enum CurationSchema {
    static let v4 = """
        CREATE TABLE curation_stage (
            pipeline TEXT NOT NULL, position INTEGER NOT NULL, name TEXT NOT NULL, settings TEXT NOT NULL,
            input_digest TEXT NOT NULL, kept INTEGER NOT NULL, dropped INTEGER NOT NULL, finished_at REAL NOT NULL,
            PRIMARY KEY (pipeline, position));
        CREATE TABLE curation_decision (
            pipeline TEXT NOT NULL, position INTEGER NOT NULL, sample TEXT NOT NULL, kept INTEGER NOT NULL,
            reason TEXT, score REAL, cluster TEXT, matched TEXT,
            PRIMARY KEY (pipeline, position, sample));
        CREATE INDEX curation_decision_sample ON curation_decision(sample);
        """
}

/// What one curation stage decided about one sample.
public struct CurationDecisionRecord: Sendable, Equatable {
    /// The sample's id (its lineage id, or its text's key).
    public var sample: String
    public var kept: Bool
    /// Why it was dropped (or what was noted when kept).
    public var reason: String?
    /// The stage's measure for it (e.g. the estimated Jaccard similarity with the sample kept).
    public var score: Double?
    /// The group it belongs to (the id of the group's kept sample).
    public var cluster: String?
    /// The sample it was matched with (the one kept in its place).
    public var matched: String?
    /// What lies behind the decision, as JSON (an LLM stage's scores, rationales, verdicts, models, cost).
    public var detail: String?
    /// The rows (a JSON array of row texts) that replace the sample in the stage's output, for
    /// stages that rewrite or expand samples; nil: the sample itself when kept.
    public var outputRows: String?

    public init(sample: String, kept: Bool, reason: String? = nil, score: Double? = nil, cluster: String? = nil, matched: String? = nil,
                detail: String? = nil, outputRows: String? = nil) {
        self.sample = sample
        self.kept = kept
        self.reason = reason
        self.score = score
        self.cluster = cluster
        self.matched = matched
        self.detail = detail
        self.outputRows = outputRows
    }
}

/// A finished curation stage as stored.
public struct CurationStageRecord: Sendable, Equatable {
    public var pipeline: String
    public var position: Int
    public var name: String
    /// The stage's settings, canonically written: a change means a recomputation.
    public var settings: String
    /// A digest of the stage's input (the ids of its samples in order).
    public var inputDigest: String
    public var kept: Int
    public var dropped: Int

    public init(pipeline: String, position: Int, name: String, settings: String, inputDigest: String, kept: Int, dropped: Int) {
        self.pipeline = pipeline
        self.position = position
        self.name = name
        self.settings = settings
        self.inputDigest = inputDigest
        self.kept = kept
        self.dropped = dropped
    }
}

extension RunStore {
    /// The stored run of stage `position` of `pipeline` (`curate` for a run's section, the command
    /// name for a standalone one), if it finished.
    public func curationStage(pipeline: String, position: Int) throws -> CurationStageRecord? {
        try read { db in
            try Row.fetchOne(db, sql: "SELECT * FROM curation_stage WHERE pipeline = ? AND position = ?", arguments: [pipeline, position]).map {
                CurationStageRecord(pipeline: $0["pipeline"], position: $0["position"], name: $0["name"], settings: $0["settings"],
                                    inputDigest: $0["input_digest"], kept: $0["kept"], dropped: $0["dropped"])
            }
        }
    }

    /// The decisions of stage `position` of `pipeline`, in sample order as stored.
    public func curationDecisions(pipeline: String, position: Int) throws -> [CurationDecisionRecord] {
        try read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM curation_decision WHERE pipeline = ? AND position = ? ORDER BY rowid",
                             arguments: [pipeline, position]).map(Self.decision)
        }
    }

    /// Replaces stage `position` of `pipeline` and its decisions in one transaction (a kill leaves
    /// the old run or the new one, never half of it).
    public func recordCurationStage(_ stage: CurationStageRecord, decisions: [CurationDecisionRecord]) throws {
        try write { db in
            try db.execute(sql: "DELETE FROM curation_decision WHERE pipeline = ? AND position = ?", arguments: [stage.pipeline, stage.position])
            try db.execute(sql: "DELETE FROM curation_stage WHERE pipeline = ? AND position = ?", arguments: [stage.pipeline, stage.position])
            for d in decisions {
                try db.execute(sql: """
                    INSERT INTO curation_decision (pipeline, position, sample, kept, reason, score, cluster, matched, detail, output_rows)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING
                    """, arguments: [stage.pipeline, stage.position, d.sample, d.kept, d.reason, d.score, d.cluster, d.matched,
                                     d.detail, d.outputRows])
            }
            try db.execute(sql: """
                INSERT INTO curation_stage (pipeline, position, name, settings, input_digest, kept, dropped, finished_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                """, arguments: [stage.pipeline, stage.position, stage.name, stage.settings, stage.inputDigest, stage.kept, stage.dropped,
                                 Date().timeIntervalSince1970])
        }
    }

    /// Every finished stage, in pipeline and stage order.
    public func curationStages() throws -> [CurationStageRecord] {
        try read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM curation_stage ORDER BY pipeline, position").map {
                CurationStageRecord(pipeline: $0["pipeline"], position: $0["position"], name: $0["name"], settings: $0["settings"],
                                    inputDigest: $0["input_digest"], kept: $0["kept"], dropped: $0["dropped"])
            }
        }
    }

    /// Every stored decision about `sample`, with its stage, in pipeline and stage order.
    public func curationHistory(sample: String) throws -> [(stage: CurationStageRecord, decision: CurationDecisionRecord)] {
        try read { db in
            try Row.fetchAll(db, sql: """
                SELECT d.*, s.name, s.settings, s.input_digest, s.kept AS stage_kept, s.dropped AS stage_dropped
                FROM curation_decision d JOIN curation_stage s ON s.pipeline = d.pipeline AND s.position = d.position
                WHERE d.sample = ? ORDER BY d.pipeline, d.position
                """, arguments: [sample]).map { row in
                (CurationStageRecord(pipeline: row["pipeline"], position: row["position"], name: row["name"], settings: row["settings"],
                                     inputDigest: row["input_digest"], kept: row["stage_kept"], dropped: row["stage_dropped"]),
                 Self.decision(row))
            }
        }
    }

    static func decision(_ row: Row) -> CurationDecisionRecord {
        CurationDecisionRecord(sample: row["sample"], kept: row["kept"], reason: row["reason"], score: row["score"],
                               cluster: row["cluster"], matched: row["matched"], detail: row["detail"], outputRows: row["output_rows"])
    }
}

/// MinHash signatures kept between runs, by the settings that determine them and the digest of
/// the text: a rerun over a grown dataset computes signatures for the new texts only.
enum SignatureSchema {
    static let v5 = """
        CREATE TABLE minhash_signature (
            settings TEXT NOT NULL, text_digest TEXT NOT NULL, signature BLOB NOT NULL,
            PRIMARY KEY (settings, text_digest));
        """
}

extension RunStore {
    /// The stored signatures among `digests` for `settings` (digest → values).
    public func minHashSignatures(settings: String, digests: [String]) throws -> [String: [UInt32]] {
        try read { db in
            var found: [String: [UInt32]] = [:]
            for start in stride(from: 0, to: digests.count, by: 500) {
                let batch = Array(digests[start..<min(digests.count, start + 500)])
                let marks = Array(repeating: "?", count: batch.count).joined(separator: ",")
                let rows = try Row.fetchAll(db, sql: "SELECT text_digest, signature FROM minhash_signature WHERE settings = ? AND text_digest IN (\(marks))",
                                            arguments: StatementArguments([settings] + batch))
                for row in rows {
                    let data: Data = row["signature"]
                    // Copied, not rebound: a blob's bytes need not be aligned for UInt32 (a stored
                    // blob of another length is returned as it is; the reader checks the count).
                    var values = [UInt32](repeating: 0, count: data.count / 4)
                    _ = values.withUnsafeMutableBytes { data.copyBytes(to: $0) }
                    found[row["text_digest"]] = values
                }
            }
            return found
        }
    }

    /// Stores signatures for `settings` (digest → values), replacing any stored under the same digest.
    public func storeMinHashSignatures(settings: String, _ signatures: [(digest: String, values: [UInt32])]) throws {
        try write { db in
            for (digest, values) in signatures {
                let data = values.withUnsafeBufferPointer { Data(buffer: $0) }
                try db.execute(sql: "INSERT INTO minhash_signature (settings, text_digest, signature) VALUES (?, ?, ?) ON CONFLICT DO UPDATE SET signature = excluded.signature",
                               arguments: [settings, digest, data])
            }
        }
    }
}
