import RefineryCore
/// An entry of `added_tokens` in `tokenizer.json`: matched in the raw text before BPE.
public struct AddedToken: Sendable, Equatable {
    public let id: Int
    public let content: String
    public let special: Bool
    public let singleWord: Bool
    public let lstrip: Bool
    public let rstrip: Bool
    public let normalized: Bool

    init(json: JSONValue) throws {
        guard let id = json["id"]?.intValue, let content = json["content"]?.stringValue, !content.isEmpty else {
            throw TextError("tokenizer.json: an added_tokens entry lacks \"id\" or \"content\"")
        }
        self.id = id
        self.content = content
        special = json["special"]?.boolValue ?? false
        singleWord = json["single_word"]?.boolValue ?? false
        lstrip = json["lstrip"]?.boolValue ?? false
        rstrip = json["rstrip"]?.boolValue ?? false
        normalized = json["normalized"]?.boolValue ?? !special
    }
}

/// Finds added tokens in text, leftmost first and longest at a position.
struct AddedTokenMatcher: Sendable {
    private let byFirstScalar: [Unicode.Scalar: [(scalars: [Unicode.Scalar], token: AddedToken)]]

    init(tokens: [AddedToken]) {
        var table: [Unicode.Scalar: [([Unicode.Scalar], AddedToken)]] = [:]
        for token in tokens {
            let scalars = Array(token.content.unicodeScalars)
            table[scalars[0], default: []].append((scalars, token))
        }
        byFirstScalar = table.mapValues { $0.sorted { $0.0.count > $1.0.count }.map { (scalars: $0.0, token: $0.1) } }
    }

    /// Splits `scalars` into segments: `(range, token?)`; `token` is set for matched added tokens,
    /// whose range includes whitespace absorbed by `lstrip`/`rstrip`.
    func split(_ scalars: [Unicode.Scalar]) -> [(Range<Int>, AddedToken?)] {
        if byFirstScalar.isEmpty { return scalars.isEmpty ? [] : [(0..<scalars.count, nil)] }
        var segments: [(Range<Int>, AddedToken?)] = []
        var textStart = 0
        var i = 0
        while i < scalars.count {
            var matched: (Int, AddedToken)? = nil
            if let candidates = byFirstScalar[scalars[i]] {
                for candidate in candidates {
                    let end = i + candidate.scalars.count
                    guard end <= scalars.count, Array(scalars[i..<end]) == candidate.scalars else { continue }
                    if candidate.token.singleWord {
                        let beforeOK = i == 0 || !Self.isWordScalar(scalars[i - 1])
                        let afterOK = end == scalars.count || !Self.isWordScalar(scalars[end])
                        if !(beforeOK && afterOK) { continue }
                    }
                    matched = (end, candidate.token)
                    break
                }
            }
            guard let (end, token) = matched else { i += 1; continue }
            var start = i
            var stop = end
            if token.lstrip { while start > textStart && scalars[start - 1].properties.isWhitespace { start -= 1 } }
            if token.rstrip { while stop < scalars.count && scalars[stop].properties.isWhitespace { stop += 1 } }
            if textStart < start { segments.append((textStart..<start, nil)) }
            segments.append((start..<stop, token))
            textStart = stop
            i = stop
        }
        if textStart < scalars.count { segments.append((textStart..<scalars.count, nil)) }
        return segments
    }

    static func isWordScalar(_ scalar: Unicode.Scalar) -> Bool {
        scalar.properties.isAlphabetic || scalar.properties.numericType != nil || scalar == "_"
    }
}
