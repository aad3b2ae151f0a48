import ArgumentParser
import Foundation
import RefineryCore
import RefineryCuration
import RefineryData
import RefineryPipeline
import RefineryStore
import RefineryText

/// `refinery data report`: one self-contained HTML page to look at a dataset.
struct DataReportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "Write an exploration report: one self-contained HTML page (no network) with counts, lengths, diversity, a topic map, near-duplicate groups and a sample browser.",
        discussion: """
        The map's vectors: --model / --base-url embeddings (cached in --state), else the rows' \
        "embedding" fields (from `data embed`), else hashed TF-IDF of the words. With --state, the \
        page shows what every curation stage decided, per stage and reason and per sample.
        """)

    @Option(help: "Input JSONL (any supported format).") var input: String
    @Option(help: "The HTML file to write.") var output: String
    @Option(help: "A run's SQLite state: curation decisions and the embedding cache.") var state: String?
    @Option(help: "Model folder (or tokenizer.json) to count lengths in tokens instead of words.") var tokenizer: String?
    @Option(help: "Topics on the map (default: from the dataset's size, 2–12).") var topics: Int?
    @Option(help: "The page's title (default: the input's file name).") var title: String?
    @OptionGroup var embedding: EmbeddingOptions

    func run() throws {
        try reportingErrors {
            if let topics, !(1...100).contains(topics) { throw CommandError("--topics must be between 1 and 100, found \(topics)") }
            let lines = try DatasetInput.read(input)
            let store = try state.map { try RunStore(path: $0) }
            var vectors: [[Float]]? = nil
            var source = ""
            if embedding.model != nil || embedding.baseURL != nil {
                var settings = embedding.settings
                settings["field"] = nil
                let embedder = try EmbeddingSource.fromSettings(settings, source: "refinery data report").makeEmbedder(onRetry: { Output.progress("[report] \($0)\n") })
                vectors = try CachedEmbeddings.vectors(of: try embedding.embeddedText.texts(of: lines, source: input), embedder: embedder,
                                                      store: store, report: { Output.progress($0) })
                source = "Embeddings of \(embedder.key)"
            } else if let fields = ExplorationReport.embeddingFields(lines) {
                vectors = fields
                source = "The rows' embedding fields"
            }
            var countTokens: ((String) -> Int)? = nil
            if let tokenizer {
                let url = URL(fileURLWithPath: tokenizer)
                let loaded = try Tokenizer(contentsOf: tokenizer.hasSuffix(".json") ? url : url.appendingPathComponent("tokenizer.json"))
                countTokens = { loaded.encode($0, addSpecialTokens: false).ids.count }
            }
            let content = try ExplorationReport.build(lines: lines, title: title ?? URL(fileURLWithPath: input).lastPathComponent, store: store,
                                                      vectors: vectors, mapSource: source, countTokens: countTokens, topics: topics)
            let page = ReportPage.html(content)
            do { try Data(page.utf8).write(to: URL(fileURLWithPath: output), options: .atomic) } catch {
                throw CommandError("cannot write \(output): \(error.localizedDescription)")
            }
            Output.line("report of \(lines.count) samples (\(content.map.labels.count) topics, \(content.stages.count) curation stages) → \(output)")
        }
    }
}
