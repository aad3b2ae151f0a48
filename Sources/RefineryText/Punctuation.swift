/// What counts as punctuation for BERT's pre-tokenizer and Refinery's text normalisation: the
/// ASCII punctuation characters (including the symbols people type as punctuation, `$+<=>^`|~`)
/// and every Unicode punctuation category (P*).
public enum Punctuation {
    public static func contains(_ scalar: Unicode.Scalar) -> Bool {
        if scalar.isASCII {
            let v = scalar.value
            return (33...47).contains(v) || (58...64).contains(v) || (91...96).contains(v) || (123...126).contains(v)
        }
        switch scalar.properties.generalCategory {
        case .connectorPunctuation, .dashPunctuation, .openPunctuation, .closePunctuation,
             .initialPunctuation, .finalPunctuation, .otherPunctuation:
            return true
        default:
            return false
        }
    }
}
