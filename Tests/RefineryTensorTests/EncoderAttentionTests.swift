import Foundation
import CRefineryKernels
@testable import RefineryTensor
import Testing

/// The encoder's packed bidirectional attention against a float64 reference: float32 closely;
/// bfloat16 products (sequences of 16 tokens or more, on oneDNN) within bfloat16's precision.
@Suite struct EncoderAttentionTests {
    static func reference(_ qkv: [Float], starts: [Int], heads: Int, headDim: Int) -> [Double] {
        let hidden = heads * headDim, stride = 3 * hidden
        var out = [Double](repeating: 0, count: starts[starts.count - 1] * hidden)
        for s in 0..<(starts.count - 1) {
            let first = starts[s], n = starts[s + 1] - first
            for head in 0..<heads {
                for i in 0..<n {
                    var scores = (0..<n).map { j -> Double in
                        var dot = 0.0
                        for d in 0..<headDim {
                            dot += Double(qkv[(first + i) * stride + head * headDim + d]) * Double(qkv[(first + j) * stride + hidden + head * headDim + d])
                        }
                        return dot / Double(headDim).squareRoot()
                    }
                    let top = scores.max() ?? 0
                    scores = scores.map { exp($0 - top) }
                    let total = scores.reduce(0, +)
                    for d in 0..<headDim {
                        var value = 0.0
                        for j in 0..<n { value += scores[j] / total * Double(qkv[(first + j) * stride + 2 * hidden + head * headDim + d]) }
                        out[(first + i) * hidden + head * headDim + d] = value
                    }
                }
            }
        }
        return out
    }

    @Test func packedAttentionMatchesFloat64InBothPrecisions() {
        let heads = 2, headDim = 8, hidden = heads * headDim
        let lengths = [5, 23, 40, 16]
        var starts = [0]
        for n in lengths { starts.append(starts[starts.count - 1] + n) }
        let rows = starts[starts.count - 1]
        var random = SplitMix64Test(seed: 3)
        let qkv = (0..<(rows * 3 * hidden)).map { _ in random.uniform() * 2 - 1 }
        let expected = Self.reference(qkv, starts: starts, heads: heads, headDim: headDim)
        var results: [ComputeDType: [Float]] = [:]
        for dtype in [ComputeDType.float32, .bfloat16] {
            var input = qkv
            var out = [Float](repeating: .nan, count: rows * hidden)
            input.withUnsafeMutableBufferPointer { q in
                out.withUnsafeMutableBufferPointer { o in
                    EncoderKernels.bidirectionalAttention(qkv: q.baseAddress!, starts: starts, heads: heads, headDim: headDim,
                                                          into: o.baseAddress!, products: dtype)
                }
            }
            let worst = zip(out, expected).map { abs(Double($0) - $1) }.max() ?? .infinity
            #expect(worst < (dtype == .float32 ? 1e-5 : 2e-2), "\(dtype): largest difference \(worst)")
            results[dtype] = out
        }
        // Sequences of 16 tokens or more run on bfloat16 operands on oneDNN's bfloat16 kernels (so the bits differ from
        // float32's); the 5-token one stays float32.
        let short = 0..<(5 * hidden), long = (5 * hidden)..<(rows * hidden)
        #expect(Array(results[.bfloat16]![short]) == Array(results[.float32]![short]))
        if ProductBackend.current.hasBFloat16Kernels {
            #expect(Array(results[.bfloat16]![long]) != Array(results[.float32]![long]), "the bfloat16 path ran")
        } else {
            #expect(results[.bfloat16]! == results[.float32]!, "without bfloat16 kernels the products stay float32")
        }
    }

    /// Rows a fused product already biased and rounded (`roundedAlready`): the same output as
    /// rounding them here for the long sequences (the same bfloat16 operands), and the short one
    /// (float32 attention) runs on their widened values — whatever the float32 scratch held.
    @Test func roundedRowsFromAFusedProductGiveTheSameAttention() throws {
        guard ProductBackend.current.hasBFloat16Kernels else { return }  // the rounded rows exist only there
        let heads = 2, headDim = 8, hidden = heads * headDim, stride = 3 * hidden
        let lengths = [5, 23, 40, 16]
        var starts = [0]
        for n in lengths { starts.append(starts[starts.count - 1] + n) }
        let rows = starts[starts.count - 1]
        var random = SplitMix64Test(seed: 5)
        let qkv = (0..<(rows * stride)).map { _ in random.uniform() * 2 - 1 }
        let bias = (0..<stride).map { _ in random.uniform() - 0.5 }
        // Here: float32 rows plus bias, rounded by the attention itself.
        var input = qkv, here = [Float](repeating: .nan, count: rows * hidden)
        var scratch = [UInt16](repeating: 0, count: (rows + 16) * stride)
        input.withUnsafeMutableBufferPointer { q in
            here.withUnsafeMutableBufferPointer { o in
                scratch.withUnsafeMutableBufferPointer { r in
                    bias.withUnsafeBufferPointer { b in
                        EncoderKernels.bidirectionalAttention(qkv: q.baseAddress!, bias: b.baseAddress!, starts: starts, heads: heads,
                                                              headDim: headDim, into: o.baseAddress!, products: .bfloat16, roundedScratch: r.baseAddress!)
                    }
                }
            }
        }
        // Fused: the rounded biased rows given, the float32 scratch full of garbage.
        var rounded = [UInt16](repeating: 0xFFFF, count: (rows + 16) * stride)
        for i in 0..<(rows * stride) { rounded[i] = HalfPrecision.floatToBFloat16(qkv[i] + bias[i % stride]) }
        var garbage = [Float](repeating: .nan, count: rows * stride), fused = [Float](repeating: .nan, count: rows * hidden)
        garbage.withUnsafeMutableBufferPointer { q in
            fused.withUnsafeMutableBufferPointer { o in
                rounded.withUnsafeMutableBufferPointer { r in
                    EncoderKernels.bidirectionalAttention(qkv: q.baseAddress!, starts: starts, heads: heads, headDim: headDim, into: o.baseAddress!,
                                                          products: .bfloat16, roundedScratch: r.baseAddress!, roundedAlready: true)
                }
            }
        }
        let short = 0..<(5 * hidden), long = (5 * hidden)..<(rows * hidden)
        #expect(Array(fused[long]) == Array(here[long]), "the same bfloat16 operands, the same bits")
        let widened = (0..<(rows * stride)).map { Double(qkv[$0] + bias[$0 % stride]) }
        let roundedReference = widened.map { Float(Double(HalfPrecision.bfloat16ToFloat(HalfPrecision.floatToBFloat16(Float($0))))) }
        let expected = Self.reference(roundedReference, starts: starts, heads: heads, headDim: headDim)
        let worst = short.map { abs(Double(fused[$0]) - expected[$0]) }.max() ?? .infinity
        #expect(worst < 1e-5, "the short sequence on the widened rounded rows: largest difference \(worst)")
    }

    /// Refinery's attention kernel (AVX512-BF16, heads of 16–64) against oneDNN's two products on
    /// the same bfloat16 operands: the same values up to the order of float32 sums; and against
    /// float64 within bfloat16's precision. Lengths cover every tail of its tiles (6 query rows,
    /// 64 keys, 12/8/6 context rows).
    @Test(arguments: [16, 32, 48, 64])
    func theAttentionKernelAgreesWithOneDNN(headDim: Int) throws {
        guard rk_has_avx512_bf16() == 1, ProductBackend.current.hasBFloat16Kernels else { return }
        let heads = 2, hidden = heads * headDim, stride = 3 * hidden
        let lengths = [16, 17, 23, 64, 70, 129]
        var starts = [0]
        for n in lengths { starts.append(starts[starts.count - 1] + n) }
        let rows = starts[starts.count - 1]
        var random = SplitMix64Test(seed: UInt64(headDim))
        let values = (0..<(rows * stride)).map { _ in random.uniform() * 4 - 2 }
        // The rounded rows, 16 zero rows after the last sequence (as the encoder lays them out).
        var rounded = [UInt16](repeating: 0, count: (rows + 16) * stride)
        for i in 0..<(rows * stride) { rounded[i] = HalfPrecision.floatToBFloat16(values[i]) }
        let widened = rounded.prefix(rows * stride).map { HalfPrecision.bfloat16ToFloat($0) }
        let expected = Self.reference(widened, starts: starts, heads: heads, headDim: headDim)
        var kernel = [Float](repeating: .nan, count: rows * hidden), library = kernel
        let scale = 1 / Float(headDim).squareRoot()
        rounded.withUnsafeBufferPointer { r in
            for s in 0..<lengths.count {
                let n = lengths[s], width = (n + 15) & ~15
                for head in 0..<heads {
                    let q = r.baseAddress! + starts[s] * stride + head * headDim, offset = starts[s] * hidden + head * headDim
                    kernel.withUnsafeMutableBufferPointer { o in
                        #expect(EncoderKernels.bfloat16Attention(qkv: q, stride: stride, n: n, width: width, headDim: headDim, scale: scale,
                                                                 into: o.baseAddress! + offset, ldo: hidden))
                    }
                    library.withUnsafeMutableBufferPointer { o in
                        #expect(EncoderKernels.bfloat16Attention(qkv: q, stride: stride, n: n, width: width, headDim: headDim, scale: scale,
                                                                 into: o.baseAddress! + offset, ldo: hidden, useKernel: false))
                    }
                }
            }
        }
        // The kernel ran: it answers for this head size itself.
        var probe = [Float](repeating: 0, count: 16 * hidden)
        rounded.withUnsafeBufferPointer { r in
            probe.withUnsafeMutableBufferPointer { o in
                #expect(rk_bf16_attention(r.baseAddress!, stride, hidden, 16, headDim, scale, o.baseAddress!, hidden) == 1)
            }
        }
        let apart = zip(kernel, library).map { abs($0 - $1) }.max() ?? .infinity
        #expect(apart < 1e-5, "kernel and oneDNN differ by \(apart)")
        let worst = zip(kernel, expected).map { abs(Double($0) - $1) }.max() ?? .infinity
        #expect(worst < 2e-2, "against float64: \(worst)")
        #expect(!kernel.contains { $0.isNaN }, "every row written")
    }
}

/// A seeded generator for test data.
struct SplitMix64Test {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func uniform() -> Float { Float(next() >> 40) / Float(1 << 24) }
}
