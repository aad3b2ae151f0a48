import Foundation

extension String {
    /// Replaces every occurrence of `pattern` (literal) with `replacement`.
    public func replacingAll(_ pattern: String, with replacement: String) -> String {
        guard !pattern.isEmpty else { return self }
        var result = ""
        var rest = Substring(self)
        while let range = rest.range(of: pattern) {
            result += rest[..<range.lowerBound]
            result += replacement
            rest = rest[range.upperBound...]
        }
        result += rest
        return result
    }
}
