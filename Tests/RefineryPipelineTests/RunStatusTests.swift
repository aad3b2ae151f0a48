import Foundation
import GRDB
import RefineryStore
import Testing
@testable import RefineryPipeline

/// What `status`, the dashboard and `/metrics` read from a state file: failures by error class,
/// the last minute's pace and the ETA it gives, who holds which task, the budget, and the
/// training pace from the log's times.
@Suite struct RunStatusTests {
    static func store() throws -> (RunStore, String) {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("refinery-status-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let path = folder.appendingPathComponent("state.db").path
        return (try RunStore(path: path), path)
    }

    @Test func errorClassesPaceHoldersAndBudget() throws {
        let (store, path) = try Self.store()
        try store.addArticle(id: "a", contentHash: "h", characters: 40, platform: nil, authorID: nil, authorName: nil, link: nil,
                             chunks: ["c1", "c2", "c3", "c4"])
        let chunks = try store.pendingChunks()
        // Chunk 1: a server error, then done. Chunk 2: an invalid reply, a truncated one, given up.
        let first = try store.beginRequest(chunkID: chunks[0].id, promptHash: "p")
        try store.failRequest(first, error: "server error 500: boom", errorClass: "server_error", rawReply: nil, usage: Usage())
        let second = try store.beginRequest(chunkID: chunks[0].id, promptHash: "p")
        try store.completeChunk(chunks[0].id, requestID: second, rawReply: "{}", usage: Usage(promptTokens: 10, completionTokens: 5, cost: 0.25),
                                pairs: [("q", "a")])
        for errorClass in ["invalid_reply", "truncated"] {
            let request = try store.beginRequest(chunkID: chunks[1].id, promptHash: "p")
            try store.failRequest(request, error: errorClass, errorClass: errorClass, rawReply: "x", usage: Usage())
        }
        try store.failChunk(chunks[1].id, reason: "no valid pairs", rawReply: "x")
        // A curation call that ended failed, rate limited.
        let call = try #require(try store.registerCalls([(key: "k", purpose: "judge", call: "{}")])["k"])
        try store.commitCall(id: call.id, outcome: LLMCallOutcomeRow(answered: false, reply: nil, finishReason: nil, error: "rate limited (429)",
                                                                   errorClass: "rate_limited", promptTokens: 0, completionTokens: 0, cost: 0, attempts: 3),
                             workerID: nil)
        let now = Date().timeIntervalSince1970
        try store.registerWorker(id: "w1", host: "box", slots: 4, at: now - 120)
        _ = try store.grantLease(taskID: "chunk:\(chunks[2].id)", workerID: "w1", expiresAt: now + 600)
        try store.recordBudget(2.5)

        let status = try RunStatus.read(path: path, now: now + 1)
        #expect(status.errorsByClass.map(\.errorClass) == ["invalid_reply", "rate_limited", "server_error", "truncated"])
        #expect(status.errorsByClass.allSatisfy { $0.count == 1 })
        #expect(status.chunksLastMinute == 1 && status.requestsLastMinute == 4)
        // Two chunks pending at one chunk a minute.
        #expect(status.generationETA == 120)
        #expect(status.heldTasks == ["w1": ["chunk:\(chunks[2].id)"]])
        #expect(status.budget == 2.5 && status.spent == 0.25)
        #expect(status.trainingETA == nil && status.stepSeconds == nil)

        let table = status.text
        #expect(table.contains("errors     invalid_reply 1 · rate_limited 1 · server_error 1 · truncated 1"), "\(table)")
        #expect(table.contains("eta 2m0s") && table.contains("of a $2.5000 budget"), "\(table)")
        #expect(table.split(separator: "\n").contains { $0.hasPrefix("  w1") && $0.contains("box") && $0.contains("chunk:\(chunks[2].id)") }, "\(table)")
        #expect(table.split(separator: "\n").allSatisfy { $0.count <= 200 })
        let json = status.json
        #expect(json.contains("\"errors_by_class\":{\"invalid_reply\":1,\"rate_limited\":1,\"server_error\":1,\"truncated\":1}"), "\(json)")
        #expect(json.contains("\"holds\":[\"chunk:\(chunks[2].id)\"]"), "\(json)")

        // An unset budget is forgotten.
        try store.recordBudget(nil)
        #expect(try store.budget() == nil)
    }

    @Test func trainingPaceFromTheLogsTimes() {
        func row(_ step: Int, tokens: Int) -> String { "{\"step\":\(step),\"loss\":1.0,\"grad_norm\":0.5,\"lr\":0.001,\"tokens\":\(tokens)}" }
        let log: [(row: String, loggedAt: Double?)] = [
            (row(1, tokens: 100), 100), (row(2, tokens: 100), 102), ("{\"step\":2,\"eval_loss\":1.5}", 102.5),
            (row(3, tokens: 100), 105), (row(4, tokens: 300), 106),
        ]
        let pace = TrainingPace(log: log)
        // Intervals 2, 3 and 1 s: the median is 2; the last step trained 300 tokens in 1 s.
        #expect(pace.stepSeconds == 2 && pace.tokensPerSecond == 300)
        // Rows without times (older state files) or a gap in the steps give no pace.
        #expect(TrainingPace(log: log.map { ($0.row, nil) }).stepSeconds == nil)
        #expect(TrainingPace(log: [(row(1, tokens: 1), 1), (row(3, tokens: 1), 2)]).stepSeconds == nil)
    }

    /// A state file from before the watch columns existed (read-only opens never migrate) still
    /// reads: its failures count as "other", its log rows have no times.
    @Test func aStateFileFromBeforeTheWatchColumnsStillReads() throws {
        let (store, path) = try Self.store()
        try store.addArticle(id: "a", contentHash: "h", characters: 40, platform: nil, authorID: nil, authorName: nil, link: nil, chunks: ["c1"])
        let chunk = try #require(try store.pendingChunks().first)
        let request = try store.beginRequest(chunkID: chunk.id, promptHash: "p")
        try store.failRequest(request, error: "boom", errorClass: "server_error", rawReply: nil, usage: Usage())
        try store.putTrainLog(step: 1, kind: "train", row: #"{"step":1,"loss":1.0,"grad_norm":1.0,"lr":0.001,"tokens":10}"#)
        let old = try DatabaseQueue(path: path)
        try old.write { db in
            for (table, column) in [("request", "error_class"), ("llm_call", "error_class"), ("train_log", "logged_at")] {
                try db.execute(sql: "ALTER TABLE \(table) DROP COLUMN \(column)")
            }
            try db.execute(sql: "DELETE FROM grdb_migrations WHERE identifier = 'v8-error-classes'")
        }
        try old.close()
        let status = try RunStatus.read(path: path)
        #expect(status.errorsByClass.map(\.errorClass) == ["other"] && status.errorsByClass.first?.count == 1)
        #expect(status.lastStep == 1 && status.stepSeconds == nil)
        #expect(status.text.contains("errors     other 1"))
    }
}
