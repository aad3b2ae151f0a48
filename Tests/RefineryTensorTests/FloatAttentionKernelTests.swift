import CRefineryKernels
import Testing

/// `rk_f32_attention` (scores, softmax and P V a block of query rows at a time, keys and values
/// packed in per-thread scratch) against the three separate calls it promises to equal, over the
/// whole sequence: the same bits, at every instruction set this CPU has, for lengths around its
/// 24-row blocks and head sizes the AVX2 transpose does (multiples of 8) and does not take.
@Suite struct FloatAttentionKernelTests {
    /// scores = scale · Q Kᵀ over keys padded with zeros to a multiple of 16, softmax of each
    /// row's n scores, then P V: the unfused path the encoder ran before the kernel.
    static func separateCalls(level: Int32, qkv: [Float], ld: Int, hidden: Int, n: Int, headDim: Int, scale: Float) -> [Float]? {
        let width = (n + 15) & ~15
        var keysT = [Float](repeating: 0, count: headDim * width), values = [Float](repeating: 0, count: n * headDim)
        for j in 0..<n {
            for d in 0..<headDim {
                keysT[d * width + j] = qkv[j * ld + hidden + d]
                values[j * headDim + d] = qkv[j * ld + 2 * hidden + d]
            }
        }
        var scores = [Float](repeating: .nan, count: n * width), out = [Float](repeating: .nan, count: n * headDim)
        guard rk_lowrank_expand_at(level, qkv, ld, keysT, width, &scores, width, n, width, headDim, scale, 0) == 1 else { return nil }
        for row in 0..<n {
            let done = scores.withUnsafeMutableBufferPointer { rk_softmax_at(level, $0.baseAddress! + row * width, n) }
            guard done == 1 else { return nil }
        }
        guard rk_lowrank_expand_at(level, scores, width, values, headDim, &out, headDim, n, headDim, n, 1, 0) == 1 else { return nil }
        return out
    }

    @Test(arguments: [(1, 8), (7, 8), (23, 32), (24, 32), (25, 32), (50, 12), (100, 32), (229, 16)])
    func equalsTheSeparateCallsBitForBit(n: Int, headDim: Int) throws {
        let hidden = 3 * headDim, ld = 3 * hidden + 5  // heads side by side, rows with spare columns
        var random = SplitMix64Test(seed: UInt64(n * 100 + headDim))
        // Query rows past n (read by the kernel? they must not be) are NaN.
        var qkv = (0..<(n * ld)).map { _ in random.uniform() * 4 - 2 }
        qkv += [Float](repeating: .nan, count: 8 * ld)
        let scale = 1 / Float(headDim).squareRoot()
        var levelsRun = 0
        for level in Int32(0)...2 {
            guard let want = Self.separateCalls(level: level, qkv: qkv, ld: ld, hidden: hidden, n: n, headDim: headDim, scale: scale) else {
                continue
            }
            let ldo = headDim + 3
            var got = [Float](repeating: -7, count: n * ldo)
            #expect(rk_f32_attention_at(level, qkv, ld, hidden, n, headDim, scale, &got, ldo) == 1)
            for row in 0..<n {
                #expect(Array(got[(row * ldo)..<(row * ldo + headDim)]) == Array(want[(row * headDim)..<((row + 1) * headDim)]),
                        "level \(level), row \(row)")
                #expect(got[row * ldo + headDim..<(row + 1) * ldo].allSatisfy { $0 == -7 }, "nothing written between rows")
            }
            levelsRun += 1
        }
        #expect(levelsRun >= 1)
        #expect(rk_f32_attention_at(3, qkv, ld, hidden, n, headDim, scale, nil, 0) == 0, "no level above AVX-512")
    }
}
