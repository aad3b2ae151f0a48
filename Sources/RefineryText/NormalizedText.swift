/// Text under normalization that remembers, for every scalar, where it came from in the input,
/// so token offsets can be reported in the caller's text (as `tokenizers` does).
public struct NormalizedText: Sendable {
    /// The current scalars.
    public var scalars: [Unicode.Scalar]
    /// For each scalar, its index in the original input (inserted scalars take their neighbour's).
    public var origins: [Int]

    /// Wraps `scalars` that start at `offset` of the original input.
    public init(scalars: [Unicode.Scalar], offset: Int) {
        self.scalars = scalars
        self.origins = Array(offset..<(offset + scalars.count))
    }

    init(scalars: [Unicode.Scalar], origins: [Int]) {
        self.scalars = scalars
        self.origins = origins
    }

    /// True when no scalars are left.
    public var isEmpty: Bool { scalars.isEmpty }

    /// The slice `range` as its own text.
    public func slice(_ range: Range<Int>) -> NormalizedText {
        NormalizedText(scalars: Array(scalars[range]), origins: Array(origins[range]))
    }

    /// Inserts `prefix` at the start; the new scalars point at the first original scalar.
    public mutating func prepend(_ prefix: [Unicode.Scalar]) {
        guard let first = origins.first else { return }
        scalars.insert(contentsOf: prefix, at: 0)
        origins.insert(contentsOf: Array(repeating: first, count: prefix.count), at: 0)
    }

    /// Replaces every occurrence of `pattern` with `replacement`.
    public mutating func replace(_ pattern: [Unicode.Scalar], with replacement: [Unicode.Scalar]) {
        guard !pattern.isEmpty else { return }
        var newScalars: [Unicode.Scalar] = []
        var newOrigins: [Int] = []
        newScalars.reserveCapacity(scalars.count)
        newOrigins.reserveCapacity(scalars.count)
        var i = 0
        while i < scalars.count {
            if i + pattern.count <= scalars.count && Array(scalars[i..<(i + pattern.count)]) == pattern {
                let origin = origins[i]
                for (k, scalar) in replacement.enumerated() {
                    newScalars.append(scalar)
                    newOrigins.append(k < pattern.count ? origins[i + k] : origin)
                }
                i += pattern.count
            } else {
                newScalars.append(scalars[i])
                newOrigins.append(origins[i])
                i += 1
            }
        }
        scalars = newScalars
        origins = newOrigins
    }

    /// Maps each character through `transform` (e.g. Unicode normalization forms, lowercasing),
    /// each output scalar pointing at an input scalar of its character as `tokenizers` aligns
    /// them — for a transform that maps a character of ASCII scalars scalar by scalar through
    /// `ascii` (every normalization form leaves ASCII as it is; lowercasing lowers A–Z). Only the
    /// stretches around non-ASCII scalars are split into characters; the rest is mapped scalar by
    /// scalar, each pointing at itself.
    ///
    /// A stretch takes one ASCII scalar on each side of a run of non-ASCII ones, the scalars a
    /// non-ASCII one can join into a character (a base before a combining mark, a scalar after a
    /// prepended one); two ASCII scalars are always separate characters but for CR LF, which
    /// `ascii` maps as the character would be.
    public mutating func mapCharacters(_ transform: (String) -> String, ascii: (Unicode.Scalar) -> Unicode.Scalar) {
        guard let firstNonASCII = scalars.firstIndex(where: { !$0.isASCII }) else {
            for index in scalars.indices { scalars[index] = ascii(scalars[index]) }
            return
        }
        var newScalars: [Unicode.Scalar] = []
        var newOrigins: [Int] = []
        newScalars.reserveCapacity(scalars.count + 16)
        newOrigins.reserveCapacity(scalars.count + 16)
        var position = 0
        var next: Int? = firstNonASCII
        while let runStart = next {
            var runEnd = runStart
            // The run of non-ASCII scalars, merged with the next run when one ASCII scalar or
            // two separate them (their stretches would overlap or touch).
            while true {
                while runEnd < scalars.count && !scalars[runEnd].isASCII { runEnd += 1 }
                var gap = runEnd
                while gap < scalars.count && gap < runEnd + 3 && scalars[gap].isASCII { gap += 1 }
                if gap < scalars.count && gap < runEnd + 3 && !scalars[gap].isASCII { runEnd = gap } else { break }
            }
            let stretch = max(position, runStart - 1)..<min(scalars.count, runEnd + 1)
            for index in position..<stretch.lowerBound {
                newScalars.append(ascii(scalars[index]))
                newOrigins.append(origins[index])
            }
            appendCharacters(of: stretch, through: transform, scalars: &newScalars, origins: &newOrigins)
            position = stretch.upperBound
            next = scalars[position...].firstIndex(where: { !$0.isASCII })
        }
        for index in position..<scalars.count {
            newScalars.append(ascii(scalars[index]))
            newOrigins.append(origins[index])
        }
        scalars = newScalars
        origins = newOrigins
    }

    /// The characters of `range` through `transform`, appended with their origins.
    private func appendCharacters(of range: Range<Int>, through transform: (String) -> String,
                                  scalars newScalars: inout [Unicode.Scalar], origins newOrigins: inout [Int]) {
        var view = String.UnicodeScalarView()
        view.append(contentsOf: scalars[range])
        var position = range.lowerBound
        for character in String(view) {
            let count = character.unicodeScalars.count
            let output = transform(String(character)).unicodeScalars
            // As `tokenizers` aligns them: the first output scalar to the first input scalar; when
            // fewer come out (composition), the rest to the last input scalars; when more
            // (decomposition), the extra ones to the last input scalar.
            let skipped = max(0, count - output.count)
            for (index, scalar) in output.enumerated() {
                newScalars.append(scalar)
                newOrigins.append(origins[position + (index == 0 ? 0 : min(count - 1, index + skipped))])
            }
            position += count
        }
    }

    /// Replaces each scalar by the scalars `transform` gives for it (none removes it); the new
    /// scalars point at the scalar they replace.
    public mutating func mapScalars(_ transform: (Unicode.Scalar) -> [Unicode.Scalar]) {
        var newScalars: [Unicode.Scalar] = []
        var newOrigins: [Int] = []
        newScalars.reserveCapacity(scalars.count)
        newOrigins.reserveCapacity(scalars.count)
        for (scalar, origin) in zip(scalars, origins) {
            for replacement in transform(scalar) {
                newScalars.append(replacement)
                newOrigins.append(origin)
            }
        }
        scalars = newScalars
        origins = newOrigins
    }

    /// Replaces each scalar by the one `transform` gives for it, or removes it for nil; the new
    /// scalar points at the one it replaces. (`mapScalars` for one-to-one-or-none maps, without
    /// an array per scalar.)
    public mutating func replaceScalars(_ transform: (Unicode.Scalar) -> Unicode.Scalar?) {
        var kept = 0
        for index in scalars.indices {
            guard let replacement = transform(scalars[index]) else { continue }
            scalars[kept] = replacement
            origins[kept] = origins[index]
            kept += 1
        }
        scalars.removeLast(scalars.count - kept)
        origins.removeLast(origins.count - kept)
    }

    /// The text as a Swift string.
    public var string: String {
        var view = String.UnicodeScalarView()
        view.append(contentsOf: scalars)
        return String(view)
    }
}
