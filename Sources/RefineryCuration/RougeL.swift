import Foundation

/// ROUGE-L between two texts as Google's rouge-score computes it without a stemmer (the scorer
/// self-instruct's novelty filter uses): lower-cased, every run of characters other than a–z and
/// 0–9 a separator (so other letters are dropped), the longest common subsequence of the tokens.
public struct RougeL: Sendable, Equatable {
    /// LCS over the prediction's tokens.
    public var precision: Double
    /// LCS over the target's tokens.
    public var recall: Double
    /// Their harmonic mean (0 when both are 0).
    public var f: Double

    public init(target: [String], prediction: [String]) {
        let lcs = Double(Self.lcs(target, prediction))
        precision = prediction.isEmpty ? 0 : lcs / Double(prediction.count)
        recall = target.isEmpty ? 0 : lcs / Double(target.count)
        f = precision + recall > 0 ? 2 * precision * recall / (precision + recall) : 0
    }

    public init(target: String, prediction: String) {
        self.init(target: Self.tokens(target), prediction: Self.tokens(prediction))
    }

    /// rouge-score's tokens of `text`.
    public static func tokens(_ text: String) -> [String] {
        var tokens: [String] = []
        var current = ""
        for scalar in text.lowercased().unicodeScalars {
            if ("a"..."z").contains(scalar) || ("0"..."9").contains(scalar) {
                current.unicodeScalars.append(scalar)
            } else if !current.isEmpty {
                tokens.append(current)
                current = ""
            }
        }
        if !current.isEmpty { tokens.append(current) }
        return tokens
    }

    /// Length of the longest common subsequence (two rows of the table).
    static func lcs(_ a: [String], _ b: [String]) -> Int {
        guard !a.isEmpty, !b.isEmpty else { return 0 }
        var previous = [Int](repeating: 0, count: b.count + 1), current = previous
        for x in a {
            for (j, y) in b.enumerated() {
                current[j + 1] = x == y ? previous[j] + 1 : max(previous[j + 1], current[j])
            }
            swap(&previous, &current)
        }
        return previous[b.count]
    }
}
