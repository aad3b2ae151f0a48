import RefineryText

/// A sample's identity when it has no lineage id: its instruction + answer text (all non-system
/// turns, or the raw text), lower-cased with single spaces. The split hashes it, so a sample
/// lands in the same split on every rerun.
public enum SampleKey {
    public static func of(_ sample: Sample) -> String {
        let raw: String
        switch sample {
        case let .text(text): raw = text
        case let .chat(messages): raw = messages.filter { $0.role != "system" }.map(\.content).joined(separator: "\n")
        }
        return raw.lowercased().split(whereSeparator: { $0.isWhitespace }).joined(separator: " ")
    }
}
