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

    /// Maps each character through `transform` (e.g. Unicode normalization forms, lowercasing);
    /// every output scalar points at its character's first original scalar.
    public mutating func mapCharacters(_ transform: (String) -> String) {
        var newScalars: [Unicode.Scalar] = []
        var newOrigins: [Int] = []
        var view = String.UnicodeScalarView()
        view.append(contentsOf: scalars)
        var position = 0
        for character in String(view) {
            let count = character.unicodeScalars.count
            let origin = origins[position]
            for scalar in transform(String(character)).unicodeScalars {
                newScalars.append(scalar)
                newOrigins.append(origin)
            }
            position += count
        }
        scalars = newScalars
        origins = newOrigins
    }

    /// Keeps only the scalars for which `keep` holds.
    public mutating func filter(_ keep: (Unicode.Scalar) -> Bool) {
        var newScalars: [Unicode.Scalar] = []
        var newOrigins: [Int] = []
        newScalars.reserveCapacity(scalars.count)
        newOrigins.reserveCapacity(scalars.count)
        for (scalar, origin) in zip(scalars, origins) where keep(scalar) {
            newScalars.append(scalar)
            newOrigins.append(origin)
        }
        scalars = newScalars
        origins = newOrigins
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

    /// The text as a Swift string.
    public var string: String {
        var view = String.UnicodeScalarView()
        view.append(contentsOf: scalars)
        return String(view)
    }
}
