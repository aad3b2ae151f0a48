import Foundation
import RefineryCore
import Testing
@testable import RefineryData
import RefineryText

/// Articles in, cleaned chunks out, matching the reference approach.
@Suite struct IngestTests {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")

    static func temporary() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("refinery-data-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    @Test func cleaningAndChunkingMatchTheReference() throws {
        let fixture = try JSONValue.parse(bytes: Array(try Data(contentsOf: Self.fixtures.appendingPathComponent("chunking.json"))))
        let chunker = try Chunker(minimum: fixture["min"]?.intValue ?? 0, maximum: fixture["max"]?.intValue ?? 0)
        let cases = try #require(fixture["cases"]?.arrayValue)
        var total = 0
        for testCase in cases {
            let cleaned = TextCleaner.clean(try #require(testCase["raw"]?.stringValue))
            #expect(cleaned == testCase["cleaned"]?.stringValue)
            var stats = ChunkingStats()
            let chunks = chunker.chunks(cleaned, stats: &stats)
            #expect(chunks == (testCase["chunks"]?.arrayValue ?? []).compactMap(\.stringValue))
            for chunk in chunks { #expect(chunk.count >= 1000 && chunk.count <= 2000) }
            total += chunks.count
        }
        #expect(total > 5)
    }

    @Test func overLongSentencesAreCutAndShortRemaindersCounted() throws {
        let chunker = try Chunker(minimum: 20, maximum: 50)
        var stats = ChunkingStats()
        let long = Array(repeating: "word", count: 40).joined(separator: " ") + "."
        let chunks = chunker.chunks(long + " Tiny.", stats: &stats)
        #expect(chunks.allSatisfy { $0.count <= 50 && $0.count >= 20 })
        #expect(stats.splitSentences == 1)
        #expect(stats.droppedPieces >= 1 && stats.droppedCharacters > 0)
        var empty = ChunkingStats()
        #expect(chunker.chunks("   ", stats: &empty).isEmpty && empty.emptyArticles == 1)
        #expect(throws: DataError.self) { _ = try Chunker(minimum: 10, maximum: 5) }
    }

    @Test func keepMarkupKeepsCodeAndNewlines() {
        let text = "# Title\n\n\n\n    let x = 1   \n  *bold*\t text\u{0007}"
        #expect(TextCleaner.clean(text, mode: .keepMarkup) == "# Title\n\n    let x = 1\n  *bold* text")
        #expect(TextCleaner.clean("a — b « c » 'd'!", mode: .reference) == "a b c 'd'!")
    }

    @Test func readsAllThreeSourceFormats() throws {
        let dir = try Self.temporary()
        let json = dir.appendingPathComponent("articles.json")
        try #"{"note": {"x": [1, "]"]}, "artifact_data": [{"id": "a1", "content": "First \"quoted\" {text}.", "platform": "blog", "author_id": "u1", "author_full_name": "Ana", "link": "https://example.org/1"}, {"id": "a2", "content": "Second."}], "tail": true}"#
            .write(to: json, atomically: true, encoding: .utf8)
        var articles: [Article] = []
        try ArticleSource.read(path: json.path) { articles.append($0) }
        #expect(articles.map(\.id) == ["a1", "a2"])
        #expect(articles[0].content == "First \"quoted\" {text}." && articles[0].authorName == "Ana" && articles[0].link == "https://example.org/1")

        let jsonl = dir.appendingPathComponent("articles.jsonl")
        try "{\"id\": \"x\", \"content\": \"one\"}\n\n{\"text\": \"two\"}\n".write(to: jsonl, atomically: true, encoding: .utf8)
        articles = []
        try ArticleSource.read(path: jsonl.path) { articles.append($0) }
        #expect(articles.map(\.id) == ["x", "line-3"] && articles[1].content == "two")

        let folder = dir.appendingPathComponent("docs")
        try FileManager.default.createDirectory(at: folder.appendingPathComponent("sub"), withIntermediateDirectories: true)
        try "alpha".write(to: folder.appendingPathComponent("b.md"), atomically: true, encoding: .utf8)
        try "beta".write(to: folder.appendingPathComponent("sub/a.txt"), atomically: true, encoding: .utf8)
        try "ignored".write(to: folder.appendingPathComponent("c.pdf"), atomically: true, encoding: .utf8)
        articles = []
        try ArticleSource.read(path: folder.path) { articles.append($0) }
        #expect(articles.map(\.id) == ["b.md", "sub/a.txt"])
    }

    @Test func malformedInputNamesThePosition() throws {
        let dir = try Self.temporary()
        let json = dir.appendingPathComponent("bad.json")
        try "{\"artifact_data\": [\n {\"id\": \"a\", \"content\": \"ok\"},\n {\"id\": \"b\", \"content\": }\n]}".write(to: json, atomically: true, encoding: .utf8)
        var seen: [String] = []
        do {
            try ArticleSource.read(path: json.path) { seen.append($0.id) }
            Issue.record("malformed JSON must be refused")
        } catch let error as DataError {
            #expect(error.message.contains("line 3"), "\(error.message)")
        }
        #expect(seen == ["a"], "articles before the error were delivered")
        let truncated = dir.appendingPathComponent("cut.json")
        try "{\"artifact_data\": [{\"id\": \"a\", \"content\": \"unterminated".write(to: truncated, atomically: true, encoding: .utf8)
        #expect(throws: DataError.self) { try ArticleSource.read(path: truncated.path) { _ in } }
        let noArray = dir.appendingPathComponent("none.json")
        try "{\"articles\": []}".write(to: noArray, atomically: true, encoding: .utf8)
        do { try ArticleSource.read(path: noArray.path) { _ in } } catch let error as DataError {
            #expect(error.message.contains("artifact_data"))
        }
        let badUTF8 = dir.appendingPathComponent("utf8.json")
        try Data("{\"artifact_data\": [{\"id\": \"a\", \"content\": \"caf".utf8 + [0xC3, 0x28] + "\"}]}".utf8).write(to: badUTF8)
        do {
            try ArticleSource.read(path: badUTF8.path) { _ in }
            Issue.record("invalid UTF-8 must be refused")
        } catch let error as DataError {
            #expect(error.message.contains("UTF-8"), "\(error.message)")
        }
        let folder = dir.appendingPathComponent("txt")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        try Data([0x61, 0x62, 0xFF, 0x63]).write(to: folder.appendingPathComponent("x.txt"))
        do {
            try ArticleSource.read(path: folder.path) { _ in }
            Issue.record("invalid UTF-8 must be refused")
        } catch let error as DataError {
            #expect(error.message.contains("x.txt") && error.message.contains("byte 2"), "\(error.message)")
        }
    }

    @Test func enormousArticleStreamsThrough() throws {
        let dir = try Self.temporary()
        let json = dir.appendingPathComponent("big.json")
        let sentence = "This sentence is part of a very long article about data pipelines. "
        let content = String(repeating: sentence, count: 40_000)  // ~2.7 MB in one article
        let body = JSONValue.object([("artifact_data", .array([.object([("id", .string("big")), ("content", .string(content))])]))]).compactText
        try body.write(to: json, atomically: true, encoding: .utf8)
        var stats = ChunkingStats()
        var chunkCount = 0
        try ArticleSource.read(path: json.path) { article in
            chunkCount += try Chunker().chunks(TextCleaner.clean(article.content), stats: &stats).count
        }
        #expect(chunkCount > 1000)
    }
}
