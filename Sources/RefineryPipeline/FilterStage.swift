import Foundation
import RefineryCuration
import RefineryData
import RefineryStore
import RefineryText

/// The rule filters as a curation stage.
///
/// ```yaml
/// - filter:
///     min_answer_chars: 20
///     max_answer_tokens: 2048
///     tokenizer: models/SmolLM2-135M      # a folder with tokenizer.json, for the token bounds
///     exclude_keywords: [lorem ipsum]
///     exclude_regex: ['(?i)\bclick here\b']
///     refusals: true                      # "As an AI language model…", "I cannot help…"
///     language: en
///     check_format: true                  # closed ``` fences, balanced brackets and quotes, ```json that parses
///     json_answers: false
/// ```
public struct FilterStage: CurationStage {
    public static let keys = ["min_instruction_chars", "max_instruction_chars", "min_answer_chars", "max_answer_chars",
                              "min_instruction_tokens", "max_instruction_tokens", "min_answer_tokens", "max_answer_tokens",
                              "tokenizer", "exclude_keywords", "exclude_regex", "refusals", "language", "check_format", "json_answers"]
    public let name = "filter"
    public let filter: SampleFilter
    public let settingsText: String

    init(_ s: ConfigSection) throws {
        var filter = SampleFilter()
        var text: [String] = []
        func range(_ part: String, _ unit: String) throws -> ClosedRange<Int>? {
            let low = try s.int("min_\(part)_\(unit)"), high = try s.int("max_\(part)_\(unit)")
            guard low != nil || high != nil else { return nil }
            let lower = low ?? 0, upper = high ?? Int.max
            guard lower >= 0, lower <= upper else {
                throw PipelineError("\(s.path): \(s.name): min_\(part)_\(unit) must be ≥ 0 and at most max_\(part)_\(unit)")
            }
            text.append("\(part)_\(unit)=\(lower)...\(upper == Int.max ? "" : String(upper))")
            return lower...upper
        }
        filter.instructionCharacters = try range("instruction", "chars")
        filter.answerCharacters = try range("answer", "chars")
        filter.instructionTokens = try range("instruction", "tokens")
        filter.answerTokens = try range("answer", "tokens")
        if let folder = try s.string("tokenizer") {
            let file = URL(fileURLWithPath: folder).appendingPathComponent(folder.hasSuffix(".json") ? "" : "tokenizer.json")
            do { filter.tokenizer = try Tokenizer(contentsOf: folder.hasSuffix(".json") ? URL(fileURLWithPath: folder) : file) } catch {
                throw PipelineError("\(s.path): \(s.name).tokenizer: cannot read \(file.path): \(error)")
            }
            text.append("tokenizer=\(folder)")
        }
        filter.excludedKeywords = try s.strings("exclude_keywords") ?? []
        filter.excludedPatterns = try s.strings("exclude_regex") ?? []
        filter.dropRefusals = try s.bool("refusals") ?? true
        filter.language = try s.string("language")?.lowercased()
        filter.checkFormat = try s.bool("check_format") ?? true
        filter.answersAreJSON = try s.bool("json_answers") ?? false
        if let problem = filter.problem() { throw PipelineError("\(s.path): \(s.name): \(problem)") }
        try s.finish(known: Self.keys)
        if !filter.excludedKeywords.isEmpty { text.append("exclude_keywords=\(filter.excludedKeywords.joined(separator: "|"))") }
        if !filter.excludedPatterns.isEmpty { text.append("exclude_regex=\(filter.excludedPatterns.joined(separator: "|"))") }
        text += ["refusals=\(filter.dropRefusals)", "language=\(filter.language ?? "any")", "check_format=\(filter.checkFormat)",
                 "json_answers=\(filter.answersAreJSON)"]
        self.filter = filter
        settingsText = text.joined(separator: " ")
    }

    /// The stage from command-line settings (the config's keys and values; `source` names them in errors).
    public static func fromSettings(_ settings: [String: Any], source: String) throws -> FilterStage {
        try FilterStage(ConfigSection(path: source, name: "filter", raw: settings))
    }

    public func decide(_ lines: [DatasetLine], store: RunStore?) throws -> [StageDecision] {
        filter.violations(lines.map(\.sample)).map { reason in
            reason.map { StageDecision(kept: false, reason: $0) } ?? StageDecision(kept: true)
        }
    }
}
