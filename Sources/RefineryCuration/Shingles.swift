/// What a document is cut into for MinHash: runs of `n` consecutive words, or of `n` characters
/// of the normalised text.
public enum Shingling: Sendable, Equatable {
    case words(Int)
    case characters(Int)

    /// The size of one shingle.
    public var size: Int {
        switch self {
        case let .words(n), let .characters(n): return n
        }
    }

    /// 32-bit hashes of the document's shingles (with repeats; a text shorter than one shingle is
    /// one shingle of all of it; an empty text has none). The hashes depend only on the
    /// normalised text, never on the process or the machine.
    public func hashes(_ text: String, normalization: TextNormalization) -> [UInt32] {
        switch self {
        case let .words(n): return Self.wordShingles(text, n: n, normalization: normalization)
        case let .characters(n): return Self.characterShingles(text, n: n, normalization: normalization)
        }
    }

    private static let offset: UInt64 = 0xCBF2_9CE4_8422_2325
    private static let prime: UInt64 = 0x0000_0100_0000_01B3

    @inline(__always)
    private static func mix(_ value: UInt64) -> UInt64 {
        var z = value &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    @inline(__always)
    private static func fold(_ value: UInt64) -> UInt32 { UInt32(truncatingIfNeeded: value ^ (value >> 32)) }

    /// Hashes of the n-word runs: each word hashed (FNV-1a over its scalars), each run a mix of its words' hashes.
    static func wordShingles(_ text: String, n: Int, normalization: TextNormalization) -> [UInt32] {
        wordShingles64(text, n: n, normalization: normalization).map(fold)
    }

    /// The 64-bit hashes of the n-word runs (for exact n-gram lookups, where 32 bits would collide);
    /// run `i` starts at word `i` of the normalised text.
    public static func wordShingles64(_ text: String, n: Int, normalization: TextNormalization) -> [UInt64] {
        runs(of: wordHashes(text, normalization: normalization), n: n)
    }

    /// The hash of each word of the normalised text (FNV-1a over its scalars).
    public static func wordHashes(_ text: String, normalization: TextNormalization) -> [UInt64] {
        var words: [UInt64] = []
        var hash = offset, inWord = false
        normalization.forEachScalar(of: text) { scalar in
            if TextNormalization.isWhitespace(scalar) {
                if inWord { words.append(hash) }
                hash = offset
                inWord = false
            } else {
                hash = (hash ^ UInt64(scalar.value)) &* prime
                inWord = true
            }
        }
        if inWord { words.append(hash) }
        return words
    }

    /// The 64-bit hashes of the runs of `n` consecutive words (one run of all of them when there
    /// are fewer); run `i` starts at word `i`.
    public static func runs(of words: [UInt64], n: Int) -> [UInt64] {
        if words.isEmpty { return [] }
        let span = min(n, words.count)
        var result: [UInt64] = []
        result.reserveCapacity(words.count - span + 1)
        for start in 0...(words.count - span) {
            var h = UInt64(span)
            for word in words[start..<(start + span)] { h = mix(h ^ word) }
            result.append(h)
        }
        return result
    }


    /// Hashes of the n-scalar windows of the normalised text.
    static func characterShingles(_ text: String, n: Int, normalization: TextNormalization) -> [UInt32] {
        var scalars: [UInt32] = []
        normalization.forEachScalar(of: text) { scalars.append($0.value) }
        if scalars.isEmpty { return [] }
        let span = min(n, scalars.count)
        var result: [UInt32] = []
        result.reserveCapacity(scalars.count - span + 1)
        for start in 0...(scalars.count - span) {
            var h = offset
            for value in scalars[start..<(start + span)] { h = (h ^ UInt64(value)) &* prime }
            result.append(fold(mix(h)))
        }
        return result
    }
}
