import Foundation
import RefineryCore

/// What a judge's reply says, once read.
public enum JudgeReading: Sendable, Equatable {
    /// A rubric score with the feedback written before it.
    case score(Double, feedback: String)
    /// A pairwise verdict: "A", "B" or "tie", with the comparison written before it.
    case winner(String, feedback: String)
}

/// Reads judges' replies strictly: a reply counts only when it holds exactly one score in the
/// scale (or one verdict), else the reason it cannot be read — never a guess.
public enum JudgeReplyParser {
    /// A rubric reply: the JSON object `{"feedback": …, "score": N}` (N a whole number in
    /// `scale`), or the plain-text form "Feedback: … Total rating: N" with exactly one rating.
    public static func rubric(_ reply: String, scale: ClosedRange<Int>) -> Result<JudgeReading, ReplyProblem> {
        let text = reply.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !text.isEmpty else { return .failure(ReplyProblem("the reply is empty")) }
        if let fields = jsonFields(in: text) {
            let object = firstByKey(fields)
            let scores = fields.filter { ["score", "rating", "total_rating"].contains($0.0.lowercased()) }
            guard let value = scores.first?.1 else { return .failure(ReplyProblem("the JSON has no \"score\"")) }
            // A repeated key is merged by JSON parsing (the last wins): count the keys in the text.
            let keys = text.matches(of: scoreKey).count
            guard scores.count == 1, keys <= 1 else { return .failure(ReplyProblem("the reply gives \(max(scores.count, keys)) scores")) }
            let score: Double
            switch value {
            case let .int(n): score = Double(n)
            case let .double(d): score = d
            case let .string(s):
                guard let d = Double(s.trimmingCharacters(in: .whitespaces)) else { return .failure(ReplyProblem("the score \"\(s.prefix(40))\" is not a number")) }
                score = d
            default: return .failure(ReplyProblem("the score must be one number, found \(value.compactText.prefix(40))"))
            }
            return check(score, feedback: (object["feedback"] ?? object["evaluation"])?.stringValue ?? "", scale: scale)
        }
        // The plain-text form: exactly one "Total rating:" (or "Score:") followed by a number.
        let ratings = numbers(after: ["total rating:", "score:", "rating:"], in: text)
        guard !ratings.isEmpty else { return .failure(ReplyProblem("no score in the reply (prose only)")) }
        guard ratings.count == 1 else { return .failure(ReplyProblem("the reply gives \(ratings.count) scores")) }
        let feedback = text.range(of: "total rating:", options: .caseInsensitive).map { String(text[..<$0.lowerBound]) } ?? ""
        return check(ratings[0], feedback: feedback.trimmingCharacters(in: .whitespacesAndNewlines), scale: scale)
    }

    /// A pairwise reply: `{"feedback": …, "winner": "A" | "B" | "tie"}`.
    public static func pairwise(_ reply: String) -> Result<JudgeReading, ReplyProblem> {
        guard let fields = jsonFields(in: reply.trimmingCharacters(in: .whitespacesAndNewlines)) else {
            return .failure(ReplyProblem("the reply is not a JSON object"))
        }
        let object = firstByKey(fields)
        guard let value = (object["winner"] ?? object["verdict"] ?? object["preferred"])?.stringValue else {
            return .failure(ReplyProblem("the JSON has no \"winner\""))
        }
        let normalized = value.trimmingCharacters(in: .whitespacesAndNewlines).lowercased()
            .replacingOccurrences(of: "answer ", with: "").replacingOccurrences(of: "response ", with: "")
        let winner: String
        switch normalized {
        case "a", "[[a]]": winner = "A"
        case "b", "[[b]]": winner = "B"
        case "tie", "c", "[[c]]", "equal", "draw": winner = "tie"
        default: return .failure(ReplyProblem("the winner \"\(value.prefix(40))\" is not A, B or tie"))
        }
        return .success(.winner(winner, feedback: (object["feedback"] ?? object["explanation"])?.stringValue ?? ""))
    }

    /// A score key in JSON text (`"score":`, `"rating":`, `"total_rating":`).
    nonisolated(unsafe) static let scoreKey = /"(?i:score|rating|total_rating)"\s*:/

    private static func check(_ score: Double, feedback: String, scale: ClosedRange<Int>) -> Result<JudgeReading, ReplyProblem> {
        guard score.isFinite, score == score.rounded() else { return .failure(ReplyProblem("the score \(score) is not a whole number")) }
        guard scale.contains(Int(score)) else {
            return .failure(ReplyProblem("the score \(Int(score)) is outside \(scale.lowerBound)–\(scale.upperBound)"))
        }
        return .success(.score(score, feedback: feedback))
    }

    /// The fields by lower-cased key (the first of repeated keys).
    static func firstByKey(_ fields: [(String, JSONValue)]) -> [String: JSONValue] {
        var object: [String: JSONValue] = [:]
        for (key, value) in fields where object[key.lowercased()] == nil { object[key.lowercased()] = value }
        return object
    }

    /// The fields of the reply's JSON object (the whole reply, or one inside a ```json fence), in
    /// order, repeated keys included.
    static func jsonFields(in text: String) -> [(String, JSONValue)]? {
        var candidates = [text]
        if let open = text.range(of: "```"), let close = text.range(of: "```", options: .backwards), open.upperBound < close.lowerBound {
            var inner = String(text[open.upperBound..<close.lowerBound])
            if inner.lowercased().hasPrefix("json") { inner.removeFirst(4) }
            candidates.append(inner)
        }
        for candidate in candidates {
            if case let .object(fields)? = try? JSONValue.parse(candidate.trimmingCharacters(in: .whitespacesAndNewlines)) { return fields }
        }
        return nil
    }

    /// Every number that follows one of `labels` (case ignored), in order of appearance.
    static func numbers(after labels: [String], in text: String) -> [Double] {
        let lower = text.lowercased()
        var found: [(String.Index, Double)] = []
        var covered: [Range<String.Index>] = []
        for label in labels {
            var start = lower.startIndex
            while let range = lower.range(of: label, range: start..<lower.endIndex) {
                start = range.upperBound
                // "total rating:" also contains "rating:": count each place once.
                if covered.contains(where: { $0.overlaps(range) }) { continue }
                covered.append(range)
                let rest = lower[range.upperBound...].drop { $0 == " " || $0 == "*" || $0 == "\t" }
                let digits = rest.prefix { $0.isNumber || $0 == "." }
                if let value = Double(digits.hasSuffix(".") ? String(digits.dropLast()) : String(digits)) { found.append((range.lowerBound, value)) }
            }
        }
        return found.sorted { $0.0 < $1.0 }.map(\.1)
    }
}

/// Why a reply could not be read.
public struct ReplyProblem: Error, Sendable, Equatable, CustomStringConvertible {
    public let reason: String
    public init(_ reason: String) { self.reason = reason }
    public var description: String { reason }
}
