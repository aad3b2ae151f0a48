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
        abstract: "Add a \"score\" field to each sample from a local BERT-family sequence classifier (fineweb-edu-classifier style).",
        discussion: """
        The text scored is the instruction and the answer (a blank line between), or --field. A \
        model with one output (regression) writes a number; one with several writes an object of \
        label → logit.
        """)

    @Option(help: "Folder of a BertForSequenceClassification checkpoint (config.json, model.safetensors, tokenizer.json).") var model: String
    @Option(help: "Input JSONL (any supported format).") var input: String
    @Option(help: "Output JSONL: the input rows with a \"score\" added.") var output: String
    @Option(help: "Score this top-level field instead of the instruction and answer.") var field: String?
    @Option(help: "Precision: auto, float32 or bfloat16.") var dtype: String = "auto"

    func run() throws {
        try reportingErrors {
            let choice = try DTypeChoice(parsing: dtype, source: "--dtype")
            let lines = try DatasetInput.read(input)
            let texts = try (field.map(EmbeddedText.field) ?? .instructionAndAnswer).texts(of: lines, source: input)
            let classifier = try BertSequenceClassifier(directory: URL(fileURLWithPath: model), dtype: choice)
            let logits = try classifier.logits(texts) { done in Output.progress("[score] \(done)/\(texts.count) samples\r") }
            if !texts.isEmpty { Output.progress("\n") }
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
                    : .object(zip(classifier.labels, values).map { ($0, .double(Double($1))) })
                fields.append(("score", score))
                rows.append(JSONValue.object(fields).compactText)
            }
            try DatasetLines.write(rows, to: output)
            Output.line("scored \(lines.count) samples (\(classifier.labels.count == 1 ? "one output" : classifier.labels.joined(separator: ", "))) → \(output)")
        }
    }
}
