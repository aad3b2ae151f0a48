import Foundation

/// How a MinHash signature is cut for locality-sensitive hashing: `bands` bands of `rows` values
/// each (`bands × rows ≤` the signature's length). Two documents become candidates when all rows
/// of at least one band agree, which happens with probability 1 − (1 − sʳ)ᵇ at Jaccard similarity s.
public struct LSHBands: Sendable, Equatable, CustomStringConvertible {
    public let bands: Int
    public let rows: Int

    public init(bands: Int, rows: Int) {
        self.bands = bands
        self.rows = rows
    }

    public var description: String { "\(bands) bands × \(rows) rows" }

    /// Probability that two documents of Jaccard similarity `s` share a band.
    public func candidateProbability(_ s: Double) -> Double { 1 - pow(1 - pow(s, Double(rows)), Double(bands)) }

    /// The bands and rows that minimise `falsePositiveWeight · ∫₀ᵗ P(s) ds + falseNegativeWeight ·
    /// ∫ₜ¹ (1 − P(s)) ds` over every b·r ≤ `permutations` — datasketch's `MinHashLSH` rule (its
    /// default weights are 0.5 and 0.5), integrated here with Gauss–Legendre quadrature.
    public static func optimal(threshold: Double, permutations: Int, falsePositiveWeight: Double = 0.5,
                               falseNegativeWeight: Double = 0.5) -> LSHBands {
        var best = LSHBands(bands: 1, rows: 1), bestError = Double.infinity
        for bands in 1...max(1, permutations) {
            for rows in 1...max(1, permutations / bands) {
                let layout = LSHBands(bands: bands, rows: rows)
                let falsePositive = integrate(0, threshold) { layout.candidateProbability($0) }
                let falseNegative = integrate(threshold, 1) { 1 - layout.candidateProbability($0) }
                let error = falsePositive * falsePositiveWeight + falseNegative * falseNegativeWeight
                if error < bestError {
                    bestError = error
                    best = layout
                }
            }
        }
        return best
    }

    /// ∫ₐᵇ f on 16 panels of 8-point Gauss–Legendre quadrature (the S-curves are smooth; this
    /// agrees with adaptive quadrature to ~1e-12 on them).
    static func integrate(_ a: Double, _ b: Double, _ f: (Double) -> Double) -> Double {
        if b <= a { return 0 }
        let nodes: [(Double, Double)] = [
            (0.1834346424956498, 0.3626837833783620), (-0.1834346424956498, 0.3626837833783620),
            (0.5255324099163290, 0.3137066458778873), (-0.5255324099163290, 0.3137066458778873),
            (0.7966664774136267, 0.2223810344533745), (-0.7966664774136267, 0.2223810344533745),
            (0.9602898564975363, 0.1012285362903763), (-0.9602898564975363, 0.1012285362903763),
        ]
        let panels = 16, width = (b - a) / Double(panels)
        var total = 0.0
        for panel in 0..<panels {
            let middle = a + (Double(panel) + 0.5) * width, half = width / 2
            for (x, w) in nodes { total += w * half * f(middle + half * x) }
        }
        return total
    }
}
