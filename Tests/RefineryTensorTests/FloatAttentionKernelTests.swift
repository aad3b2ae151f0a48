import Foundation
import CRefineryKernels
import Testing

/// `rk_f32_attention` (scores, softmax and P V a block of 24 query rows at a time, its own exp,
/// each row of P V scaled by 1 / its sum) against float64 at every instruction set this CPU has,
/// for lengths around its blocks, head sizes the AVX2 transpose does (multiples of 8) and does not
/// take, and scores spread wide enough that some exps fall below float32's normals (to zero).
@Suite struct FloatAttentionKernelTests {
    /// The attention in float64, and the largest score's magnitude.
    static func reference(_ qkv: [Float], ld: Int, hidden: Int, n: Int, headDim: Int, scale: Double) -> (out: [Double], largestScore: Double) {
        var out = [Double](repeating: 0, count: n * headDim), largestScore = 0.0
        for i in 0..<n {
            var scores = (0..<n).map { j in
                (0..<headDim).reduce(0.0) { $0 + Double(qkv[i * ld + $1]) * Double(qkv[j * ld + hidden + $1]) } * scale
            }
            largestScore = max(largestScore, scores.map(abs).max() ?? 0)
            let top = scores.max() ?? 0
            scores = scores.map { Foundation.exp($0 - top) }
            let total = scores.reduce(0, +)
            for d in 0..<headDim {
                out[i * headDim + d] = (0..<n).reduce(0.0) { $0 + scores[$1] * Double(qkv[$1 * ld + 2 * hidden + d]) } / total
            }
        }
        return (out, largestScore)
    }

    @Test(arguments: [(1, 8, Float(2)), (7, 8, 2), (23, 32, 2), (24, 32, 2), (25, 32, 2), (50, 12, 2), (100, 32, 2), (229, 16, 2),
                      (60, 32, 12)])
    func matchesFloat64AtEveryInstructionSet(n: Int, headDim: Int, spread: Float) throws {
        let hidden = 3 * headDim, ld = 3 * hidden + 5  // heads side by side, rows with spare columns
        var random = SplitMix64Test(seed: UInt64(n * 100 + headDim))
        var qkv = (0..<(n * ld)).map { _ in (random.uniform() * 2 - 1) * spread }
        qkv += [Float](repeating: .nan, count: 8 * ld)  // rows past the sequence must never be read
        let scale = 1 / Float(headDim).squareRoot()
        let (want, largestScore) = Self.reference(qkv, ld: ld, hidden: hidden, n: n, headDim: headDim, scale: Double(scale))
        let largest = want.map(abs).max() ?? 1
        // float32 scores carry a rounding of up to |score| · 2⁻²³ into their exps (and the outputs);
        // on top of that, 2e-6 of the largest output for the exp, the sums and the scaling.
        let tolerance = max(1, largest) * (2e-6 + largestScore * 0x1p-23)
        var results: [[Float]] = []
        for level in Int32(0)...2 {
            let ldo = headDim + 3
            var got = [Float](repeating: -7, count: n * ldo)
            guard rk_f32_attention_at(level, qkv, ld, hidden, n, headDim, scale, &got, ldo) == 1 else { continue }
            var worst = 0.0, values: [Float] = []
            for row in 0..<n {
                for d in 0..<headDim {
                    worst = max(worst, abs(Double(got[row * ldo + d]) - want[row * headDim + d]))
                    values.append(got[row * ldo + d])
                }
                #expect(got[row * ldo + headDim..<(row + 1) * ldo].allSatisfy { $0 == -7 }, "nothing written between rows")
            }
            #expect(worst <= tolerance, "level \(level): largest difference \(worst) (outputs up to \(largest), scores up to \(largestScore))")
            results.append(values)
        }
        #expect(results.count >= 1)
        #expect(rk_f32_attention_at(3, qkv, ld, hidden, n, headDim, scale, nil, 0) == 0, "no level above AVX-512")
    }
}
