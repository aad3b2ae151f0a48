import ArgumentParser
import Foundation
import RefineryCore
import RefineryModel
import RefineryPipeline
import RefineryText

/// `refinery eval`: the masked, token-weighted loss of a dataset.
struct EvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval", abstract: "Masked mean loss of a JSONL dataset (assistant tokens only by default).")

    @Option(name: .long, help: "Precision of the matrix products: auto (the checkpoint's), float32 or bfloat16.")
    var dtype: String = "auto"

    @Option(name: .long, help: "Model folder.")
    var model: String

    @Option(name: .long, help: "PEFT LoRA adapter applied on top of the model.")
    var adapter: String?

    @Option(name: .long, help: "JSONL dataset.")
    var data: String

    @Option(name: .long, help: "Dataset format: auto, openai, sharegpt, alpaca, oasst, text.")
    var format: String = "auto"

    @Option(name: .long, help: "Built-in template instead of the model's.")
    var template: String?

    @Option(name: .long, help: "Truncate samples to this many tokens.")
    var maxLength: Int?

    @Option(name: .long, help: "Tokens that carry loss: assistant or all.")
    var trainOn: String = "assistant"

    func run() throws {
        try reportingErrors {
            let datasetFormat: DatasetFormat?
            if format == "auto" { datasetFormat = nil } else {
                guard let parsed = DatasetFormat(rawValue: format) else {
                    throw CommandError("unknown --format \(format); use auto, \(DatasetFormat.allCases.map(\.rawValue).joined(separator: ", "))")
                }
                datasetFormat = parsed
            }
            guard let trainOnValue = TrainOn(rawValue: trainOn) else { throw CommandError("--train-on must be assistant or all") }
            if let maxLength, maxLength < 2 { throw CommandError("--max-length must be at least 2") }
            let directory = URL(fileURLWithPath: model)
            let chat = try ChatTokenizer(directory: directory, templateName: template)
            let encoder = SampleEncoder(chat: chat, trainOn: trainOnValue, maxLength: maxLength)
            let encoded = try DatasetLoading.encode(path: data, format: datasetFormat, encoder: encoder)
            let llama = try LlamaModel(directory: directory, dtype: try DTypeChoice(parsing: dtype, source: "--dtype"),
                                       projections: QLoRABaseNote.projections(forAdapter: adapter))
            let start = Date()
            let report: (Int, Int) -> Void = { done, total in
                let elapsed = Date().timeIntervalSince(start)
                let eta = done > 0 ? DurationText.of(elapsed / Double(done) * Double(total - done)) : "?"
                Output.progress("\r[eval] " + ProgressBar.render(done: done, total: total)
                                + " \(done)/\(total) samples, \(String(format: "%.1f", Double(done) / max(elapsed, 1e-9))) samples/s, ETA \(eta)")
            }
            let result: EvaluationResult
            if let adapter {
                let lora = try LoRAAdapter.load(directory: URL(fileURLWithPath: adapter), model: llama.config)
                result = try Evaluator(model: llama).evaluate(encoded, adapter: lora, progress: report)
            } else {
                result = try Evaluator(model: llama).evaluate(encoded, progress: report)
            }
            Output.progress("\n")
            if result.tokens == 0 { throw CommandError("no token of \(data) carries loss (check --train-on and the template)") }
            var fields: [(String, JSONValue)] = [("loss", .double(result.loss)), ("tokens", .int(result.tokens)), ("samples", .int(result.samples))]
            if result.truncated > 0 { fields.append(("truncated", .int(result.truncated))) }
            Output.line(JSONValue.object(fields).compactText)
        }
    }
}
