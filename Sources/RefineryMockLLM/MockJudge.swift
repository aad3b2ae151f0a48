import Foundation
import RefineryCore

/// How the dry-run server answers judge prompts (Refinery's default rubric and pairwise
/// prompts): deterministic scores and verdicts that depend on the answers, a little on the judge
/// model (so a jury of two mock models disagrees now and then), and — for a comparison — never on
/// the order of the answers, unless the server plays a position-biased judge.
public enum MockJudge {
    /// The reply to a judge prompt, or nil when `prompt` is not one.
    public static func reply(to prompt: String, model: String, prefersFirst: Bool) -> String? {
        if let a = section(prompt, after: "Answer A:\n", before: "\n\nAnswer B:"), let b = section(prompt, after: "Answer B:\n", before: nil) {
            let winner: String
            if prefersFirst {
                winner = "A"
            } else if a == b {
                winner = "tie"
            } else {
                // The better answer by its quality, the same whichever place it is in.
                let (qa, qb) = (quality(a), quality(b))
                winner = qa != qb ? (qa > qb ? "A" : "B") : (StableHash.value(a) > StableHash.value(b) ? "A" : "B")
            }
            let feedback = winner == "tie" ? "Both answers are equally good." : "Answer \(winner) is more complete and more precise."
            return JSONValue.object([("feedback", .string(feedback)), ("winner", .string(winner))]).compactText
        }
        if prompt.contains("\"score\""), let answer = section(prompt, after: "Answer:\n", before: nil) {
            var score = quality(answer)
            // Each judge model departs from the common view on about one answer in five.
            let noise = StableHash.value(model + "\u{1}" + answer) % 10
            if noise == 0 { score = min(4, score + 1) } else if noise == 1 { score = max(1, score - 1) }
            let feedback = ["The answer misses the point of the instruction.", "The answer is on topic but incomplete.",
                            "The answer is correct and helpful, though it could say more.", "The answer is complete, correct and clear."][score - 1]
            return JSONValue.object([("feedback", .string(feedback)), ("score", .int(score))]).compactText
        }
        return nil
    }

    /// A score from 1 to 4 every mock judge agrees on: very short answers get 1, others spread by a hash.
    public static func quality(_ answer: String) -> Int {
        let words = answer.split(whereSeparator: \.isWhitespace).count
        if words < 3 { return 1 }
        return 2 + Int(StableHash.value(answer) % 3)
    }

    /// The text between `start` and `end` (or the end of the prompt), trimmed.
    static func section(_ prompt: String, after start: String, before end: String?) -> String? {
        guard let from = prompt.range(of: start, options: .backwards) else { return nil }
        var rest = prompt[from.upperBound...]
        if let end {
            guard let to = rest.range(of: end) else { return nil }
            rest = rest[..<to.lowerBound]
        }
        return rest.trimmingCharacters(in: .whitespacesAndNewlines)
    }
}
