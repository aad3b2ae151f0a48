import ArgumentParser
import Foundation
import RefineryCore
import RefineryCuration
import RefineryData
import RefineryModel

/// `refinery data score`: a local classifier's score for every sample.
struct DataScoreCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "score",
        abstract: "Add a \"score\" field to each sample from a local reward model or classifier.",
        discussion: """
        Llama-family reward models (LlamaForSequenceClassification and the Mistral / Qwen2 ones) \
        score each conversation rendered through the model's chat template, read at its last \
        non-pad token. BERT-family classifiers (fineweb-edu-classifier style) score the \
        instruction and the answer (a blank line between), or --field. A model with one output \
        writes a number; one with several writes an object of label → logit.
        """)

    @Option(help: "Folder of a *ForSequenceClassification checkpoint (Llama, Mistral, Qwen2 or BERT family).") var model: String
    @Option(help: "Input JSONL (any supported format).") var input: String
    @Option(help: "Output JSONL: the input rows with a \"score\" added.") var output: String
    @Option(help: "Score this top-level field instead of the instruction and answer.") var field: String?
    @Option(help: "Precision: auto, float32, bfloat16, or int8 (BERT-family classifiers: layer products dynamically quantized, ~1.5× float32's speed on AVX2).") var dtype: String = "auto"

    func run() throws {
        try reportingErrors {
            let precision = try ScorerPrecision(parsing: dtype, source: "--dtype")
            let lines = try DatasetInput.read(input)
            let scorer = try SampleScorer(directory: URL(fileURLWithPath: model), precision: precision, field: field)
            let labels = scorer.labels
            let logits = try scorer.scores(lines, source: input, progress: { done in
                Output.progress("\r[score] " + ProgressBar.render(done: done, total: lines.count) + " \(done)/\(lines.count) samples")
            }, warn: { Output.progress("[score] warning: \($0)\n") })
            if !lines.isEmpty { Output.progress("\n") }
            var rows: [String] = []
            for (line, values) in zip(lines, logits) {
                guard values.allSatisfy(\.isFinite) else {
                    throw CommandError("\(input):\(line.lineNumber): the model's output is not a finite number")
                }
                guard case var .object(fields) = try JSONValue.parse(line.row) else {
                    throw CommandError("\(input):\(line.lineNumber): a sample must be a JSON object")
                }
                fields.removeAll { $0.0 == "score" }
                let score: JSONValue = values.count == 1
                    ? .double(Double(values[0]))
                    : .object(zip(labels, values).map { ($0, .double(Double($1))) })
                fields.append(("score", score))
                rows.append(JSONValue.object(fields).compactText)
            }
            try DatasetLines.write(rows, to: output)
            Output.line("scored \(lines.count) samples (\(labels.count == 1 ? "one output" : labels.joined(separator: ", "))) → \(output)")
        }
    }
}
