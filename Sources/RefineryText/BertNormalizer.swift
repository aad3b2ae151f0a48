import RefineryCore

/// `tokenizers`' `BertNormalizer`: BERT's text clean-up before WordPiece, in its order —
/// drop NUL, U+FFFD and control/format/unassigned/private-use characters and turn every
/// whitespace into a space (`clean_text`); put spaces around CJK ideographs
/// (`handle_chinese_chars`); decompose and drop non-spacing marks (`strip_accents`, which
/// follows `lowercase` when unset); lowercase.
struct BertNormalizer: Sendable {
    let cleanText: Bool
    let handleChineseCharacters: Bool
    let stripAccents: Bool
    let lowercase: Bool

    init(json: JSONValue) {
        cleanText = json["clean_text"]?.boolValue ?? true
        handleChineseCharacters = json["handle_chinese_chars"]?.boolValue ?? true
        lowercase = json["lowercase"]?.boolValue ?? true
        stripAccents = json["strip_accents"]?.boolValue ?? lowercase
    }

    func apply(_ text: inout NormalizedText) {
        if cleanText {
            text.replaceScalars { scalar in
                if scalar.value == 0 || scalar.value == 0xFFFD || Self.isControl(scalar) { return nil }
                return Self.isWhitespace(scalar) ? " " : scalar
            }
        }
        if handleChineseCharacters, text.scalars.contains(where: Self.isChineseCharacter) {
            text.mapScalars { Self.isChineseCharacter($0) ? [" ", $0, " "] : [$0] }
        }
        if stripAccents, text.scalars.contains(where: { !$0.isASCII }) {
            text.mapCharacters({ $0.decomposedStringWithCanonicalMapping }, ascii: { $0 })
            text.replaceScalars { $0.properties.generalCategory == .nonspacingMark ? nil : $0 }
        }
        if lowercase {
            if text.scalars.allSatisfy(\.isASCII) {
                text.replaceScalars(Self.lowercasedASCII)
            } else {
                text.mapCharacters({ $0.lowercased() }, ascii: Self.lowercasedASCII)
            }
        }
    }

    /// A–Z lowered; every other scalar as it is.
    static func lowercasedASCII(_ scalar: Unicode.Scalar) -> Unicode.Scalar {
        (65...90).contains(scalar.value) ? Unicode.Scalar(UInt8(scalar.value + 32)) : scalar
    }

    /// Tab, newline and carriage return count as whitespace, as does every White_Space character.
    static func isWhitespace(_ scalar: Unicode.Scalar) -> Bool {
        scalar == "\t" || scalar == "\n" || scalar == "\r" || scalar.properties.isWhitespace
    }

    /// The "other" categories (Cc, Cf, Cn, Co, Cs) except tab, newline and carriage return.
    static func isControl(_ scalar: Unicode.Scalar) -> Bool {
        if scalar == "\t" || scalar == "\n" || scalar == "\r" { return false }
        if scalar.isASCII { return scalar.value < 32 || scalar.value == 127 }
        switch scalar.properties.generalCategory {
        case .control, .format, .unassigned, .privateUse, .surrogate: return true
        default: return false
        }
    }

    /// The CJK Unified Ideographs blocks BERT pads with spaces.
    static func isChineseCharacter(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0x4E00...0x9FFF, 0x3400...0x4DBF, 0x20000...0x2A6DF, 0x2A700...0x2B73F, 0x2B740...0x2B81F,
             0x2B920...0x2CEAF, 0xF900...0xFAFF, 0x2F800...0x2FA1F:
            return true
        default:
            return false
        }
    }
}
