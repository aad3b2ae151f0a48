import Foundation
import RefineryText

/// The parts of a sample the rule filters read: the instruction (every user turn) and the answer
/// (every assistant turn); a text sample is all answer.
public struct SampleParts: Sendable {
    public var instruction: String
    public var answer: String

    public init(_ sample: Sample) {
        switch sample {
        case let .text(text):
            instruction = ""
            answer = text
        case let .chat(messages):
            instruction = messages.filter { $0.role == "user" }.map(\.content).joined(separator: "\n")
            answer = messages.filter { $0.role == "assistant" }.map(\.content).joined(separator: "\n")
        }
    }
}

/// Rule filters: length bounds, excluded keywords and patterns, refusals and boilerplate, the
/// answer's language and form. A sample is dropped by the first rule it breaks, which is its reason.
public struct SampleFilter: Sendable {
    /// Inclusive bounds, in characters and (with a tokenizer) tokens; nil: no bound.
    public var instructionCharacters: ClosedRange<Int>?
    public var answerCharacters: ClosedRange<Int>?
    public var instructionTokens: ClosedRange<Int>?
    public var answerTokens: ClosedRange<Int>?
    /// Counts tokens for the token bounds.
    public var tokenizer: Tokenizer?
    /// Words or phrases that drop a sample wherever they appear (case ignored).
    public var excludedKeywords: [String] = []
    /// Regular expressions that drop a sample when they match its instruction or answer.
    public var excludedPatterns: [String] = []
    /// Drops answers that refuse or talk about being an AI (`refusalPatterns`).
    public var dropRefusals = true
    /// The answer's language (ISO 639-1), or nil for any.
    public var language: String?
    /// Drops answers with unclosed code fences, unbalanced brackets or quotes, unparsable ```json blocks.
    public var checkFormat = true
    /// Every answer must be JSON.
    public var answersAreJSON = false

    /// Phrases of refusals and AI boilerplate, matched case-insensitively at any position.
    public static let refusalPatterns = [
        #"\bas an ai\b"#, #"\bas a language model\b"#, #"\bas an ai language model\b"#, #"\bi'?m (just )?an ai\b"#,
        #"\bi am (just )?an ai\b"#, #"\bi (cannot|can't|can not|won't|am unable to|'m unable to) (help|assist|provide|comply|fulfill)"#,
        #"\bi'?m sorry,? but i (cannot|can't)\b"#, #"\bi apologi[sz]e,? but\b"#, #"\bmy (training|knowledge) (data|cutoff)\b"#,
        #"\b(the|this) (text|passage|context|article) (does not|doesn't) (mention|provide|say|contain)"#,
    ]

    public init() {}

    /// Why the rules are unusable (a bad pattern, an empty range), or nil.
    public func problem() -> String? {
        for pattern in excludedPatterns where (try? Regex(pattern)) == nil {
            return "exclude_regex: \(pattern) is not a valid regular expression"
        }
        if let language, !LanguageGuess.codes.contains(language) {
            return "language \(language) is not one the check knows (\(LanguageGuess.codes.joined(separator: ", ")))"
        }
        if (instructionTokens != nil || answerTokens != nil) && tokenizer == nil {
            return "token bounds need a tokenizer (give the model folder)"
        }
        return nil
    }

    /// The first rule `sample` breaks, as a reason, or nil when it passes every rule.
    public func violation(_ sample: Sample) -> String? { violations([sample])[0] }

    /// For each sample, the first rule it breaks, or nil (patterns compiled once for all).
    public func violations(_ samples: [Sample]) -> [String?] {
        let excluded = excludedPatterns.compactMap { pattern in (try? Regex(pattern)).map { (pattern, $0) } }
        let refusals = dropRefusals ? Self.refusalPatterns.compactMap { try? Regex($0) } : []
        return samples.map { violation($0, excluded: excluded, refusals: refusals) }
    }

    private func violation(_ sample: Sample, excluded: [(String, Regex<AnyRegexOutput>)], refusals: [Regex<AnyRegexOutput>]) -> String? {
        let parts = SampleParts(sample)
        if let reason = bound(parts.instruction.count, instructionCharacters, "instruction", "characters") { return reason }
        if let reason = bound(parts.answer.count, answerCharacters, "answer", "characters") { return reason }
        if let tokenizer {
            if instructionTokens != nil, let reason = bound(tokenizer.encode(parts.instruction, addSpecialTokens: false).ids.count,
                                                            instructionTokens, "instruction", "tokens") { return reason }
            if answerTokens != nil, let reason = bound(tokenizer.encode(parts.answer, addSpecialTokens: false).ids.count,
                                                       answerTokens, "answer", "tokens") { return reason }
        }
        let lowered = (parts.instruction + "\n" + parts.answer).lowercased()
        for keyword in excludedKeywords where lowered.contains(keyword.lowercased()) { return "contains the excluded keyword “\(keyword)”" }
        for (pattern, regex) in excluded where parts.instruction.contains(regex) || parts.answer.contains(regex) {
            return "matches the excluded pattern \(pattern)"
        }
        let answer = parts.answer.lowercased()
        for regex in refusals {
            if let match = answer.firstMatch(of: regex) { return "refusal or AI boilerplate (“\(answer[match.range])”)" }
        }
        if let language, let found = LanguageGuess.of(parts.answer), found != language {
            return "the answer looks like \(found), not \(language)"
        }
        if answersAreJSON, let problem = FormatChecks.jsonProblem(parts.answer) { return problem }
        if checkFormat, let problem = FormatChecks.problem(parts.answer) { return "malformed answer: \(problem)" }
        return nil
    }

    private func bound(_ value: Int, _ range: ClosedRange<Int>?, _ part: String, _ unit: String) -> String? {
        guard let range, !range.contains(value) else { return nil }
        return value < range.lowerBound ? "\(part) has \(value) \(unit), fewer than \(range.lowerBound)"
                                        : "\(part) has \(value) \(unit), more than \(range.upperBound)"
    }
}
