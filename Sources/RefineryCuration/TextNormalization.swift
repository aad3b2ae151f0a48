import RefineryText
/// How text is normalised before it is compared (exact dedup, MinHash shingles, decontamination).
/// Each step is stated and configurable: lower-casing, collapsing whitespace into single spaces
/// (and trimming it), and turning punctuation into whitespace — a separator, so that
/// "decimal.Decimal" and "decimal . Decimal" give the same words.
public struct TextNormalization: Sendable, Equatable {
    public var lowercase: Bool
    public var collapseWhitespace: Bool
    public var stripPunctuation: Bool

    public init(lowercase: Bool = true, collapseWhitespace: Bool = true, stripPunctuation: Bool = false) {
        self.lowercase = lowercase
        self.collapseWhitespace = collapseWhitespace
        self.stripPunctuation = stripPunctuation
    }

    /// Case and whitespace: what exact dedup compares by default.
    public static let exact = TextNormalization()
    /// Case, whitespace and punctuation: what near-duplicate detection compares by default, so a
    /// reformatted copy ("word , word" or "a.b" for "a . b") shingles like its original.
    public static let fuzzy = TextNormalization(stripPunctuation: true)

    /// The normalised text.
    public func apply(_ text: String) -> String {
        var scalars = String.UnicodeScalarView()
        forEachScalar(of: text) { scalars.append($0) }
        return String(scalars)
    }

    /// Calls `body` with each scalar of the normalised text, in order (a single space between
    /// words when collapsing whitespace).
    @inline(__always)
    func forEachScalar(of text: String, _ body: (Unicode.Scalar) -> Void) {
        var pendingSpace = false, started = false
        for scalar in text.unicodeScalars {
            let punctuation = stripPunctuation && Self.isPunctuation(scalar)
            if collapseWhitespace && (punctuation || Self.isWhitespace(scalar)) {
                pendingSpace = started
                continue
            }
            if punctuation {
                body(" ")
                continue
            }
            if pendingSpace {
                body(" ")
                pendingSpace = false
            }
            started = true
            if lowercase {
                if scalar.isASCII {
                    let value = scalar.value
                    body((65...90).contains(value) ? Unicode.Scalar(value + 32) ?? scalar : scalar)
                } else if scalar.properties.changesWhenLowercased {
                    for lowered in scalar.properties.lowercaseMapping.unicodeScalars { body(lowered) }
                } else {
                    body(scalar)
                }
            } else {
                body(scalar)
            }
        }
    }

    /// Unicode whitespace (an ASCII fast path first: property lookups dominate otherwise).
    @inline(__always)
    static func isWhitespace(_ scalar: Unicode.Scalar) -> Bool {
        let v = scalar.value
        if v < 128 { return v == 32 || (9...13).contains(v) }
        return scalar.properties.isWhitespace
    }

    /// Unicode punctuation (general categories P*) and the ASCII symbols people type as punctuation.
    static func isPunctuation(_ scalar: Unicode.Scalar) -> Bool { Punctuation.contains(scalar) }
}
