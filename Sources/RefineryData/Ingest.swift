import Foundation
import RefineryCore
import RefineryLLM
import RefineryStore
import RefineryText

/// Articles → cleaned → chunked → stored. Articles already in the store are left as they are.
public enum Ingest {
    public struct Report: Sendable, Equatable {
        public var chunking = ChunkingStats()
        public var newArticles = 0
        public var knownArticles = 0
    }

    public static func run(articles path: String, store: RunStore, cleaning: CleaningMode, chunker: Chunker) throws -> Report {
        var report = Report()
        try ArticleSource.read(path: path) { article in
            let cleaned = TextCleaner.clean(article.content, mode: cleaning)
            let chunks = chunker.chunks(cleaned, stats: &report.chunking)
            let added = try store.addArticle(id: article.id, contentHash: StableHash.hex(article.content), characters: article.content.count,
                                             platform: article.platform, authorID: article.authorID, authorName: article.authorName,
                                             link: article.link, chunks: chunks)
            if added { report.newArticles += 1 } else { report.knownArticles += 1 }
        }
        return report
    }
}

/// Writes the generated pairs as a dataset with a deterministic train/test split (DESIGN §3.10).
public enum DatasetExport {
    public enum Format: String, Sendable, CaseIterable { case openai, alpaca, sharegpt }

    /// The stable id of a sample: article, chunk ordinal, pair ordinal (not database row ids).
    static func sampleID(articleID: String, chunkOrdinal: Int, pair: Int) -> String { "\(articleID)#\(chunkOrdinal)#\(pair)" }

    /// True when the sample belongs to the test split.
    public static func isTest(_ id: String, fraction: Double, seed: UInt64) -> Bool {
        guard fraction > 0 else { return false }
        let hash = StableHash.value("\(seed):\(id)")
        return Double(hash >> 11) / Double(1 << 53) < fraction
    }

    /// The test file's path next to `output` (`data.jsonl` → `data.test.jsonl`).
    public static func testPath(for output: String) -> String {
        output.hasSuffix(".jsonl") ? String(output.dropLast(6)) + ".test.jsonl" : output + ".test.jsonl"
    }

    /// Writes train and test files atomically; returns (train, test) counts.
    @discardableResult
    public static func write(store: RunStore, output: String, format: Format, testFraction: Double, seed: UInt64) throws -> (Int, Int) {
        let chunks = Dictionary(uniqueKeysWithValues: try store.allChunks().map { ($0.id, $0) })
        var train = "", test = ""
        var counts = (0, 0)
        for sample in try store.samples() {
            guard let chunk = chunks[sample.chunkID] else { continue }
            let id = sampleID(articleID: sample.articleID, chunkOrdinal: chunk.ordinal, pair: sample.ordinal)
            let lineage = JSONValue.object([("id", .string(id)), ("article_id", .string(sample.articleID)),
                                            ("chunk", .int(chunk.ordinal)), ("pair", .int(sample.ordinal))])
            let row: JSONValue
            switch format {
            case .openai:
                row = .object([("messages", .array([.object([("role", .string("user")), ("content", .string(sample.instruction))]),
                                                    .object([("role", .string("assistant")), ("content", .string(sample.answer))])])),
                               ("lineage", lineage)])
            case .alpaca:
                row = .object([("instruction", .string(sample.instruction)), ("input", .string("")), ("output", .string(sample.answer)), ("lineage", lineage)])
            case .sharegpt:
                row = .object([("conversations", .array([.object([("from", .string("human")), ("value", .string(sample.instruction))]),
                                                         .object([("from", .string("gpt")), ("value", .string(sample.answer))])])),
                               ("lineage", lineage)])
            }
            if isTest(id, fraction: testFraction, seed: seed) {
                test += row.compactText + "\n"
                counts.1 += 1
            } else {
                train += row.compactText + "\n"
                counts.0 += 1
            }
        }
        do {
            try FileManager.default.createDirectory(at: URL(fileURLWithPath: output).deletingLastPathComponent(), withIntermediateDirectories: true)
            try Data(train.utf8).write(to: URL(fileURLWithPath: output), options: .atomic)
            try Data(test.utf8).write(to: URL(fileURLWithPath: testPath(for: output)), options: .atomic)
        } catch {
            throw DataError("cannot write \(output): \(error.localizedDescription)")
        }
        return counts
    }
}
