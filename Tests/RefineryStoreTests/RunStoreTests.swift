import Foundation
import GRDB
import Testing
@testable import RefineryStore

/// The SQLite run state: resumable, idempotent, and careful with files that are not its own.
@Suite struct RunStoreTests {
    static func path() throws -> String {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("refinery-store-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url.appendingPathComponent("state.db").path
    }

    @Test func articlesAndChunksResumeWithoutDuplicates() throws {
        let path = try Self.path()
        let store = try RunStore(path: path)
        #expect(try store.addArticle(id: "a", contentHash: "h", characters: 10, platform: nil, authorID: nil, authorName: nil, link: nil, chunks: ["c1", "c2"]))
        #expect(try !store.addArticle(id: "a", contentHash: "h", characters: 10, platform: nil, authorID: nil, authorName: nil, link: nil, chunks: ["c1", "c2"]))
        let chunks = try store.pendingChunks()
        #expect(chunks.map(\.text) == ["c1", "c2"])
        let request = try store.beginRequest(chunkID: chunks[0].id, promptHash: "p")
        try store.completeChunk(chunks[0].id, requestID: request, rawReply: "{}", usage: Usage(promptTokens: 10, completionTokens: 5, cost: 0.01),
                                pairs: [("q1", "a1"), ("q2", "a2")])
        // A repeated commit (e.g. a re-sent result) changes nothing.
        try store.completeChunk(chunks[0].id, requestID: request, rawReply: "{}", usage: Usage(promptTokens: 10, completionTokens: 5, cost: 0.01),
                                pairs: [("q1", "a1"), ("q2", "a2")])
        let reopened = try RunStore(path: path)
        #expect(try reopened.pendingChunks().map(\.text) == ["c2"])
        #expect(try reopened.samples().map(\.instruction) == ["q1", "q2"])
        #expect(try reopened.samples().allSatisfy { $0.articleID == "a" && $0.requestID == request })
        #expect(try reopened.totalUsage().usage == Usage(promptTokens: 10, completionTokens: 5, cost: 0.01))
        try reopened.failChunk(chunks[1].id, reason: "invalid JSON after 3 attempts", rawReply: "not json")
        #expect(try reopened.chunkCounts() == [.done: 1, .failed: 1])
        #expect(try reopened.failures().first?.rawReply == "not json")
        #expect(try reopened.requeueFailed() == 1)
    }

    @Test func foreignAndCorruptFilesAreRefusedAndLeftAlone() throws {
        let foreign = try Self.path()
        let other = try DatabaseQueue(path: foreign)
        try other.write { try $0.execute(sql: "CREATE TABLE invoices (id INTEGER)") }
        try other.close()
        let before = try Data(contentsOf: URL(fileURLWithPath: foreign))
        do {
            _ = try RunStore(path: foreign)
            Issue.record("a foreign database must be refused")
        } catch let error as StoreError {
            #expect(error.message.contains("another application"), "\(error.message)")
        }
        #expect(try Data(contentsOf: URL(fileURLWithPath: foreign)) == before)

        let corrupt = try Self.path()
        let garbage = Data((0..<4096).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) })
        try garbage.write(to: URL(fileURLWithPath: corrupt))
        do {
            _ = try RunStore(path: corrupt)
            Issue.record("a corrupt file must be refused")
        } catch let error as StoreError {
            #expect(error.message.contains("not a readable SQLite database") || error.message.contains("another application"), "\(error.message)")
        }
        #expect(try Data(contentsOf: URL(fileURLWithPath: corrupt)) == garbage)
    }

    @Test func concurrentOpenersOfANewFileAllSucceed() async throws {
        let path = try Self.path()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<6 {
                group.addTask { _ = try RunStore(path: path) }
            }
            try await group.waitForAll()
        }
        #expect(try RunStore(path: path, readOnly: true).chunkCounts().isEmpty)
        #expect(throws: StoreError.self) { _ = try RunStore(path: path + "-missing", readOnly: true) }
    }
}
