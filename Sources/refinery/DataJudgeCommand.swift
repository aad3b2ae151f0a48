import ArgumentParser
import Foundation
import RefineryCore
import RefineryData
import RefineryPipeline

/// `refinery data judge`: an LLM judge (or a jury) on every sample.
struct DataJudgeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "judge",
        abstract: "Score samples with an LLM judge or a jury (1–4 rubric), or compare two answers pairwise in both orders.",
        discussion: """
        Rubric: each judge writes feedback, then a score from 1 to --scale; the jury's score is \
        the --aggregate of theirs. Pairwise: the answer and the --candidate field's answer are \
        compared twice, each in first place once; a verdict counts only when both orders agree \
        (else a tie), so a judge's preference for a position cancels out. An unreadable reply is \
        answered with what was wrong and asked again (--max-invalid times), then recorded as a \
        failure, never as a score. Each row gets a "judge" field (score, verdict, every judge's \
        score and rationale, cost); --min-score drops rows below it. With several judges the \
        agreement between them (percent and Cohen's kappa) is printed, and with --human against \
        that column too. Every call is kept in the state file: run again after a kill, or with \
        other settings, and only calls never answered are made.
        """)

    @Option(help: "Input JSONL (any supported format).") var input: String
    @Option(help: "Output JSONL: the rows with a \"judge\" field (pairwise with --use-winner: the winning answer in place).") var output: String
    @Option(help: "OpenAI-compatible endpoint up to /v1.") var baseURL: String
    @Option(help: "Judge model; repeat for a jury.") var model: [String] = []
    @Option(help: "Environment variable holding the API key.") var apiKeyEnv: String = "OPENAI_API_KEY"
    @Option(help: "rubric or pairwise.") var mode: String = "rubric"
    @Option(help: "Pairwise: the field holding the answer to compare with.") var candidate: String?
    @Flag(help: "Pairwise: write the winning answer in place of the sample's own.") var useWinner = false
    @Option(help: "Drop rows whose jury score is below this.") var minScore: Double?
    @Option(help: "How a jury's scores become one: mean, median or majority.") var aggregate: String = "mean"
    @Option(help: "The best score of the rubric (the worst is 1).") var scale: Int = 4
    @Flag(help: "Remove the part of the score that answer length explains (a fit on log words).") var lengthNormalize = false
    @Option(help: "A column with human labels to measure the judges against.") var human: String?
    @Option(help: "Follow-ups after an unreadable reply before it counts as a failure.") var maxInvalid: Int = 2
    @Option(help: "Dollars per million prompt tokens.") var priceInput: Double = 0
    @Option(help: "Dollars per million completion tokens.") var priceOutput: Double = 0
    @Option(help: "A user prompt replacing the default ({instruction}, {answer}; pairwise {answer_a}, {answer_b}), read from this file.") var promptFile: String?
    @Flag(help: "Keep rows whose judgment failed (default: drop them).") var keepFailures = false
    @OptionGroup var calls: LLMCallOptions

    func run() throws {
        try reportingErrors {
            guard !model.isEmpty else { throw CommandError("give --model (repeat it for a jury)") }
            var settings: [String: Any] = ["mode": mode, "aggregate": aggregate, "scale": scale, "length_normalize": lengthNormalize,
                                           "max_invalid": maxInvalid, "price_input": priceInput, "price_output": priceOutput,
                                           "api_key_env": apiKeyEnv, "base_url": baseURL, "on_failure": keepFailures ? "keep" : "drop"]
            if model.count == 1 { settings["model"] = model[0] } else { settings["judges"] = model.map { ["model": $0] as [String: Any] } }
            if let candidate { settings["candidate"] = candidate }
            if let minScore { settings["min_score"] = minScore }
            if let human { settings["human"] = human }
            if let promptFile {
                guard let text = try? String(contentsOfFile: promptFile, encoding: .utf8) else { throw CommandError("cannot read --prompt-file \(promptFile)") }
                settings["prompt"] = text
            }
            let stage = try JudgeStage.fromSettings(settings, source: "refinery data judge")
            let lines = try DatasetInput.read(input)
            let (store, book) = try calls.book(output: output)
            let context = CurationContext(store: store, calls: book, report: { Output.progress($0) })
            let decisions = try CurationPlan.decisions(of: stage, position: 0, on: lines, context: context, pipeline: "data judge")
            var rows: [String] = []
            for (line, decision) in zip(lines, decisions) where decision.kept {
                let base = (useWinner ? decision.outputRows?.first : nil) ?? line.row
                guard case var .object(fields) = try JSONValue.parse(base) else { throw CommandError("\(input):\(line.lineNumber): a sample must be a JSON object") }
                fields.removeAll { $0.0 == "judge" }
                if let detail = decision.detail { fields.append(("judge", try JSONValue.parse(detail))) }
                rows.append(JSONValue.object(fields).compactText)
            }
            try DatasetLines.write(rows, to: output)
            let failed = decisions.filter { $0.reason?.hasPrefix("the judge failed") == true }.count
            Output.line("judged \(lines.count) samples (\(failed) failed), wrote \(rows.count) → \(output); calls kept in \(store.path)")
        }
    }
}
