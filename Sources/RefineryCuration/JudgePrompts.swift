import Foundation
import RefineryText

/// A judge's prompt: a system message and a user message with placeholders — `{instruction}`,
/// `{answer}` (rubric); `{instruction}`, `{answer_a}`, `{answer_b}` (pairwise).
public struct JudgePrompt: Sendable, Equatable {
    public var system: String
    public var user: String

    public init(system: String, user: String) {
        self.system = system
        self.user = user
    }

    /// The messages with the placeholders filled (each replaced once, left to right, so text
    /// inside a sample that looks like a placeholder is never replaced).
    public func messages(_ values: [(String, String)]) -> [ChatMessage] {
        var text = user
        var filled = ""
        while let open = text.range(of: "{") {
            filled += text[..<open.lowerBound]
            let rest = text[open.lowerBound...]
            if let (name, value) = values.first(where: { rest.hasPrefix("{\($0.0)}") }) {
                filled += value
                text = String(rest.dropFirst(name.count + 2))
            } else {
                filled += "{"
                text = String(rest.dropFirst())
            }
        }
        filled += text
        return [ChatMessage(role: "system", content: system), ChatMessage(role: "user", content: filled)]
    }

    /// The placeholders `mode` needs that `user` lacks.
    public func missingPlaceholders(for mode: JudgeMode) -> [String] {
        let needed = mode == .rubric ? ["{instruction}", "{answer}"] : ["{instruction}", "{answer_a}", "{answer_b}"]
        return needed.filter { !user.contains($0) }
    }

    /// The rubric: feedback first, then one score from 1 (poor) to 4 (excellent).
    public static func rubric(scale: ClosedRange<Int> = 1...4) -> JudgePrompt {
        let levels: String
        if scale == 1...4 {
            levels = """
            1: the answer is off-topic, wrong or of no help for the instruction.
            2: the answer is on topic but misses important parts of the instruction or contains mistakes.
            3: the answer is correct and helpful but could be more complete, clearer or better organised.
            4: the answer is excellent: correct, complete, clear, and it does exactly what the instruction asks.
            """
        } else {
            levels = "\(scale.lowerBound) is the worst answer possible, \(scale.upperBound) a perfect one."
        }
        return JudgePrompt(
            system: "You review instruction–answer pairs meant for fine-tuning a language model. You are strict, fair and consistent.",
            user: """
            Rate how well the answer serves the instruction on a scale from \(scale.lowerBound) to \(scale.upperBound):
            \(levels)

            First write your feedback: a few sentences on accuracy, completeness and clarity. Then give the score.
            Reply with one JSON object and nothing else: {"feedback": "<your feedback>", "score": <a whole number from \(scale.lowerBound) to \(scale.upperBound)>}

            Instruction:
            {instruction}

            Answer:
            {answer}
            """)
    }

    /// The pairwise comparison: which of two answers serves the instruction better, or a tie.
    public static let pairwise = JudgePrompt(
        system: "You compare answers to the same instruction. You are impartial: neither the order in which the answers appear, nor their length, nor their style sways you.",
        user: """
        Which answer serves the instruction better: more accurate, more helpful, more complete and clearer?
        First explain your comparison in a few sentences. Then give your verdict: "A", "B", or "tie" when neither is better.
        Reply with one JSON object and nothing else: {"feedback": "<your comparison>", "winner": "A" | "B" | "tie"}

        Instruction:
        {instruction}

        Answer A:
        {answer_a}

        Answer B:
        {answer_b}
        """)

    /// What is said after a reply that could not be read, before asking again.
    static func followUp(problem: ReplyProblem, mode: JudgeMode, scale: ClosedRange<Int>) -> String {
        let shape = mode == .rubric
            ? "{\"feedback\": \"<your feedback>\", \"score\": <a whole number from \(scale.lowerBound) to \(scale.upperBound)>}"
            : "{\"feedback\": \"<your comparison>\", \"winner\": \"A\" | \"B\" | \"tie\"}"
        return "Your reply could not be read: \(problem.reason). Reply again with one JSON object and nothing else: \(shape)"
    }
}

/// How a judge decides: a score on the rubric, or a comparison of two answers.
public enum JudgeMode: String, Sendable, CaseIterable {
    case rubric, pairwise
}

/// How a jury's opinions become one.
public enum JuryAggregate: String, Sendable, CaseIterable {
    case mean, median, majority
}
