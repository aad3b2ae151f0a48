import ArgumentParser
import Foundation
import RefineryCore
import RefineryCuration
import RefineryData
import RefineryPipeline
import RefineryStore

/// `refinery data embed`: adds an `embedding` field to every sample.
struct DataEmbedCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "embed",
        abstract: "Add an \"embedding\" field to each sample: a local sentence-transformers model or an OpenAI-compatible /v1/embeddings endpoint.",
        discussion: """
        The text embedded is the instruction and the answer (a blank line between), or --field. \
        With --state, vectors are cached per text and model in the SQLite file as they are made: \
        a rerun or a resumed run embeds only what is new.
        """)

    @Option(help: "Input JSONL (any supported format).") var input: String
    @Option(help: "Output JSONL: the input rows with an \"embedding\" array added.") var output: String
    @OptionGroup var embedding: EmbeddingOptions
    @Option(help: "SQLite state file caching the vectors.") var state: String?

    func run() throws {
        try reportingErrors {
            var settings = embedding.settings
            settings["field"] = nil
            let source = try EmbeddingSource.fromSettings(settings, source: "refinery data embed")
            let lines = try DatasetInput.read(input)
            let texts = try embedding.embeddedText.texts(of: lines, source: input)
            let store = try state.map { try RunStore(path: $0) }
            let embedder = try source.makeEmbedder(onRetry: { Output.progress("[embed] \($0)\n") })
            let vectors = try CachedEmbeddings.vectors(of: texts, embedder: embedder, store: store, report: { Output.progress($0) })
            var rows: [String] = []
            rows.reserveCapacity(lines.count)
            for (line, vector) in zip(lines, vectors) {
                guard vector.allSatisfy(\.isFinite) else {
                    throw CommandError("\(input):\(line.lineNumber): the embedding holds a value that is not a finite number")
                }
                guard case var .object(fields) = try JSONValue.parse(line.row) else {
                    throw CommandError("\(input):\(line.lineNumber): a sample must be a JSON object")
                }
                fields.removeAll { $0.0 == "embedding" }
                let head = JSONValue.object(fields).compactText.dropLast()
                rows.append(head + (fields.isEmpty ? "" : ",") + "\"embedding\":[" + vector.map { "\($0)" }.joined(separator: ",") + "]}")
            }
            try DatasetLines.write(rows, to: output)
            Output.line("embedded \(lines.count) samples (\(vectors.first?.count ?? 0) dimensions, \(embedder.key)) → \(output)")
        }
    }
}
