import ArgumentParser
import Foundation
import RefineryCore
import RefineryData
import RefineryPipeline
import RefineryStore

/// `refinery data filter`: the rule filters, standalone.
struct DataFilterCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "filter",
        abstract: "Drop samples by rules: length bounds, excluded keywords and patterns, refusals, the answer's language and form.",
        discussion: "Each dropped sample has one reason: the first rule it breaks. --rejected writes them with it.")

    @Option(help: "Input JSONL (any supported format).") var input: String
    @Option(help: "Output JSONL (rows unchanged).") var output: String
    @Option(help: "Where dropped rows go, each with a \"rejected\" field naming its reason.") var rejected: String?
    @Option var minInstructionChars: Int?
    @Option var maxInstructionChars: Int?
    @Option var minAnswerChars: Int?
    @Option var maxAnswerChars: Int?
    @Option var minInstructionTokens: Int?
    @Option var maxInstructionTokens: Int?
    @Option var minAnswerTokens: Int?
    @Option var maxAnswerTokens: Int?
    @Option(help: "Model folder (or tokenizer.json) for the token bounds.") var tokenizer: String?
    @Option(help: "A word or phrase that drops a sample (repeatable; case ignored).") var excludeKeyword: [String] = []
    @Option(help: "A regular expression that drops a sample when it matches (repeatable).") var excludeRegex: [String] = []
    @Flag(inversion: .prefixedNo, help: "Drop refusals and AI boilerplate (\"As an AI language model…\").") var refusals = true
    @Option(help: "Keep only answers in this language (ISO 639-1: en, de, fr, …).") var language: String?
    @Flag(inversion: .prefixedNo, help: "Drop answers with unclosed code fences, unbalanced brackets or quotes, ```json that does not parse.") var checkFormat = true
    @Flag(help: "Every answer must be JSON.") var jsonAnswers = false
    @Option(help: "SQLite state file: decisions stored per sample (see `refinery data why`).") var state: String?

    func run() throws {
        try reportingErrors {
            var settings: [String: Any] = ["refusals": refusals, "check_format": checkFormat, "json_answers": jsonAnswers]
            let bounds: [(String, Int?)] = [("min_instruction_chars", minInstructionChars), ("max_instruction_chars", maxInstructionChars),
                                            ("min_answer_chars", minAnswerChars), ("max_answer_chars", maxAnswerChars),
                                            ("min_instruction_tokens", minInstructionTokens), ("max_instruction_tokens", maxInstructionTokens),
                                            ("min_answer_tokens", minAnswerTokens), ("max_answer_tokens", maxAnswerTokens)]
            for (key, value) in bounds { if let value { settings[key] = value } }
            if let tokenizer { settings["tokenizer"] = tokenizer }
            if !excludeKeyword.isEmpty { settings["exclude_keywords"] = excludeKeyword }
            if !excludeRegex.isEmpty { settings["exclude_regex"] = excludeRegex }
            if let language { settings["language"] = language }
            let stage = try FilterStage.fromSettings(settings, source: "refinery data filter")
            let lines = try DatasetInput.read(input)
            let store = try state.map { try RunStore(path: $0) }
            let decisions = try CurationPlan.decisions(of: stage, position: 0, on: lines, store: store, pipeline: "data filter",
                                                       report: { Output.progress($0) })
            let kept = zip(lines, decisions).filter { $0.1.kept }.map(\.0)
            try DatasetLines.write(kept.map(\.row), to: output)
            if let rejected {
                let rows = zip(lines, decisions).compactMap { line, decision -> String? in
                    guard !decision.kept, case var .object(fields)? = try? JSONValue.parse(line.row) else { return nil }
                    fields.append(("rejected", .string(decision.reason ?? "dropped")))
                    return JSONValue.object(fields).compactText
                }
                try DatasetLines.write(rows, to: rejected)
            }
            var reasons: [String: Int] = [:]
            for decision in decisions where !decision.kept {
                let reason = decision.reason ?? "dropped"
                reasons[String(reason.prefix { $0 != "(" && $0 != "“" }).trimmingCharacters(in: .whitespaces), default: 0] += 1
            }
            Output.line("kept \(kept.count) of \(lines.count) samples → \(output)")
            for (reason, count) in reasons.sorted(by: { $0.value > $1.value }) { Output.line("  dropped \(count): \(reason)") }
        }
    }
}
