import Foundation
import RefineryCore

/// The `normalizer` section of `tokenizer.json`.
indirect enum Normalizer: Sendable {
    case sequence([Normalizer])
    case prepend(String)
    case replace(pattern: String, content: String)
    case nfc, nfkc, nfd, nfkd
    case lowercase
    case strip(left: Bool, right: Bool)
    case bert(BertNormalizer)

    /// Parses one normalizer object; `null` yields nil.
    static func parse(_ json: JSONValue?) throws -> Normalizer? {
        guard let json, !json.isNull else { return nil }
        guard let type = json["type"]?.stringValue else {
            throw TextError("tokenizer.json: normalizer without a \"type\"")
        }
        switch type {
        case "Sequence":
            let items = json["normalizers"]?.arrayValue ?? []
            return .sequence(try items.compactMap { try parse($0) })
        case "Prepend":
            return .prepend(json["prepend"]?.stringValue ?? "")
        case "Replace":
            guard let pattern = json["pattern"]?["String"]?.stringValue else {
                throw TextError("tokenizer.json: Replace normalizer supports only a String pattern")
            }
            return .replace(pattern: pattern, content: json["content"]?.stringValue ?? "")
        case "NFC": return .nfc
        case "NFKC": return .nfkc
        case "NFD": return .nfd
        case "NFKD": return .nfkd
        case "Lowercase": return .lowercase
        case "Strip":
            return .strip(left: json["strip_left"]?.boolValue ?? true, right: json["strip_right"]?.boolValue ?? true)
        case "BertNormalizer":
            return .bert(BertNormalizer(json: json))
        default:
            throw TextError("tokenizer.json: unsupported normalizer type \"\(type)\" (supported: Sequence, Prepend, Replace, NFC, NFKC, NFD, NFKD, Lowercase, Strip, BertNormalizer)")
        }
    }

    /// Applies the normalizer in place.
    func apply(_ text: inout NormalizedText) {
        switch self {
        case let .sequence(items): for item in items { item.apply(&text) }
        case let .prepend(prefix): if !text.isEmpty { text.prepend(Array(prefix.unicodeScalars)) }
        case let .replace(pattern, content): text.replace(Array(pattern.unicodeScalars), with: Array(content.unicodeScalars))
        case .nfc: text.mapCharacters({ $0.precomposedStringWithCanonicalMapping }, ascii: { $0 })
        // NFKC as NFC of NFKD: Foundation on Linux does not compose after a compatibility decomposition
        // (halfwidth ｶﾞ stayed カ + U+3099, not ガ).
        case .nfkc: text.mapCharacters({ $0.decomposedStringWithCompatibilityMapping.precomposedStringWithCanonicalMapping }, ascii: { $0 })
        case .nfd: text.mapCharacters({ $0.decomposedStringWithCanonicalMapping }, ascii: { $0 })
        case .nfkd: text.mapCharacters({ $0.decomposedStringWithCompatibilityMapping }, ascii: { $0 })
        case .lowercase: text.mapCharacters({ $0.lowercased() }, ascii: BertNormalizer.lowercasedASCII)
        case let .strip(left, right):
            var start = 0, end = text.scalars.count
            if left { while start < end && text.scalars[start].properties.isWhitespace { start += 1 } }
            if right { while end > start && text.scalars[end - 1].properties.isWhitespace { end -= 1 } }
            text = text.slice(start..<end)
        case let .bert(normalizer):
            normalizer.apply(&text)
        }
    }
}
