import Foundation
import Crypto
import RefineryText

/// Exact deduplication: texts are equal when the SHA-256 of their normalised form is.
public struct ExactDeduplicator: Sendable {
    public let normalization: TextNormalization

    public init(normalization: TextNormalization = .exact) { self.normalization = normalization }

    /// The hex SHA-256 of the normalised text: what equal texts share.
    public func key(_ text: String) -> String { ContentDigest.sha256(normalization.apply(text)) }

    /// For each text, the index of the text kept among its equals (itself when kept).
    public func keptMembers(_ texts: [String], rule: KeepRule = .first, scores: [Double?] = []) -> [Int] {
        var clusters = DuplicateClusters(count: texts.count)
        var firstWithKey: [String: Int] = [:]
        for (index, text) in texts.enumerated() {
            let key = key(text)
            if let earlier = firstWithKey[key] { clusters.join(earlier, index) } else { firstWithKey[key] = index }
        }
        return clusters.keptMember(rule: rule, lengths: rule == .longest ? texts.map(\.count) : [], scores: scores)
    }
}

/// The text of a sample that curation compares: every non-system turn of a conversation (the
/// instruction and the answer), one per line, or a text sample as it is.
public enum ComparedText {
    public static func of(_ sample: Sample) -> String {
        switch sample {
        case let .text(text): return text
        case let .chat(messages): return messages.filter { $0.role != "system" }.map(\.content).joined(separator: "\n")
        }
    }
}

/// Hex SHA-256 digests of text.
public enum ContentDigest {
    public static func sha256(_ text: String) -> String { sha256(bytes: Data(text.utf8)) }

    public static func sha256(bytes: Data) -> String {
        SHA256.hash(data: bytes).map { byte in
            let hex = String(byte, radix: 16)
            return byte < 16 ? "0" + hex : hex
        }.joined()
    }
}
