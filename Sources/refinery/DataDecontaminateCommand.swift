import ArgumentParser
import Foundation
import RefineryCore
import RefineryData
import RefineryPipeline
import RefineryStore

/// `refinery data decontaminate`: drop training samples that contain eval samples.
struct DataDecontaminateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "decontaminate",
        abstract: "Drop training samples that contain an eval sample: exact copies, shared word n-grams, near copies (MinHash).",
        discussion: "Only the training file is filtered; eval files are only read. Prints a table of what matched what.")

    @Option(help: "Training JSONL (any supported format).") var input: String
    @Option(help: "Output JSONL (rows unchanged).") var output: String
    @Option(help: "An eval set to protect (repeatable; any supported format).") var eval: [String] = []
    @Option(help: "Shared word n-gram length (8–13 as the field uses).") var ngram: Int = 13
    @Flag(inversion: .prefixedNo, help: "Also drop near copies found by MinHash.") var minhash = true
    @Option(help: "MinHash Jaccard similarity threshold.") var threshold: Double = 0.8
    @Option(help: "Where the matches go as JSONL (training line, eval sample, kind, evidence).") var matches: String?
    @Option(help: "SQLite state file: decisions stored per sample (see `refinery data why`).") var state: String?

    func run() throws {
        try reportingErrors {
            guard !eval.isEmpty else { throw CommandError("give at least one --eval FILE to protect") }
            let stage = try DecontaminationStage.fromSettings(["eval": eval, "ngram": ngram, "minhash": minhash, "threshold": threshold],
                                                             source: "refinery data decontaminate")
            let lines = try DatasetInput.read(input)
            let store = try state.map { try RunStore(path: $0) }
            let decisions = try CurationPlan.decisions(of: stage, position: 0, on: lines, store: store, pipeline: "data decontaminate",
                                                       report: { Output.progress($0) })
            try DatasetLines.write(zip(lines, decisions).filter { $0.1.kept }.map(\.0.row), to: output)
            var rows: [String] = []
            Output.line("kept \(decisions.filter(\.kept).count) of \(lines.count) training samples → \(output)")
            for (line, decision) in zip(lines, decisions) where !decision.kept {
                let reason = decision.reason ?? "contaminated"
                Output.line("  \(input):\(line.lineNumber)  \(reason)")
                rows.append(JSONValue.object([("train", .string("\(input):\(line.lineNumber)")), ("reason", .string(reason))]).compactText)
            }
            if let matches { try DatasetLines.write(rows, to: matches) }
        }
    }
}
