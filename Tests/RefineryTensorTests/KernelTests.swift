import Foundation
import Testing
@testable import RefineryTensor

/// Kernels against straightforward reference loops (Double precision).
@Suite struct KernelTests {
    struct Random {
        var state: UInt64
        mutating func next() -> Float {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Float(Double(state >> 40) / Double(1 << 24)) * 2 - 1
        }
        mutating func tensor(_ shape: [Int]) -> Tensor {
            Tensor(shape: shape, values: (0..<shape.reduce(1, *)).map { _ in next() })
        }
    }

    @Test func linearMatchesNaiveProduct() {
        var random = Random(state: 1)
        let x = random.tensor([5, 7]), w = random.tensor([3, 7])
        let y = Tensor(zeros: [5, 3])
        BLAS.linear(x.pointer, rows: 5, inFeatures: 7, weight: w.pointer, outFeatures: 3, into: y.pointer)
        for r in 0..<5 {
            for o in 0..<3 {
                var sum = 0.0
                for i in 0..<7 { sum += Double(x.pointer[r * 7 + i]) * Double(w.pointer[o * 7 + i]) }
                #expect(abs(Double(y.pointer[r * 3 + o]) - sum) < 1e-5)
            }
        }
    }

    @Test func rmsNormMatchesDefinition() {
        var random = Random(state: 2)
        let x = random.tensor([3, 16]), w = random.tensor([16])
        let y = Tensor(zeros: [3, 16])
        Kernels.rmsNorm(x.pointer, weight: w.pointer, rows: 3, dim: 16, eps: 1e-5, into: y.pointer)
        for r in 0..<3 {
            var meanSquare = 0.0
            for i in 0..<16 { meanSquare += Double(x.pointer[r * 16 + i] * x.pointer[r * 16 + i]) }
            meanSquare /= 16
            for i in 0..<16 {
                let want = Double(w.pointer[i]) * Double(x.pointer[r * 16 + i]) / (meanSquare + 1e-5).squareRoot()
                #expect(abs(Double(y.pointer[r * 16 + i]) - want) < 1e-5)
            }
        }
    }

    @Test func softmaxSumsToOneAndOrders() {
        var values: [Float] = [1, 3, 2, -1000, 50]
        values.withUnsafeMutableBufferPointer { Kernels.softmax($0.baseAddress!, count: 5) }
        #expect(abs(values.reduce(0, +) - 1) < 1e-6)
        #expect(values[4] > 0.999 && values[3] == 0)
        let logits: [Float] = [0.5, -1, 2]
        let ce = logits.withUnsafeBufferPointer { Kernels.crossEntropy($0.baseAddress!, vocab: 3, target: 2) }
        let want = log(exp(0.5) + exp(-1.0) + exp(2.0)) - 2
        #expect(abs(ce - want) < 1e-6)
    }

    /// Grouped-query causal attention (with a block-diagonal mask) against a naive loop.
    @Test func attentionMatchesNaiveGroupedQueryAttention() {
        var random = Random(state: 3)
        let t = 6, heads = 4, kvHeads = 2, d = 8
        let q = random.tensor([t, heads * d]), k = random.tensor([t, kvHeads * d]), v = random.tensor([t, kvHeads * d])
        let keyStart = [0, 0, 0, 3, 3, 3]
        let out = Tensor(zeros: [t, heads * d])
        Attention.causal(q: q.pointer, qStride: heads * d, k: k.pointer, v: v.pointer, kvStride: kvHeads * d,
                         out: out.pointer, outStride: heads * d, queryCount: t, keyCount: t, heads: heads,
                         kvHeads: kvHeads, headDim: d, keyStart: keyStart)
        for h in 0..<heads {
            let kv = h / (heads / kvHeads)
            for i in 0..<t {
                var weights: [Double] = []
                for j in keyStart[i]...i {
                    var dot = 0.0
                    for c in 0..<d { dot += Double(q.pointer[i * heads * d + h * d + c]) * Double(k.pointer[j * kvHeads * d + kv * d + c]) }
                    weights.append(dot / Double(d).squareRoot())
                }
                let m = weights.max()!
                let exps = weights.map { exp($0 - m) }
                let total = exps.reduce(0, +)
                for c in 0..<d {
                    var want = 0.0
                    for (n, j) in (keyStart[i]...i).enumerated() { want += exps[n] / total * Double(v.pointer[j * kvHeads * d + kv * d + c]) }
                    #expect(abs(Double(out.pointer[i * heads * d + h * d + c]) - want) < 1e-5)
                }
            }
        }
    }

    @Test func halfPrecisionConversionsAreExact() {
        #expect(HalfPrecision.bfloat16ToFloat(0x3F80) == 1)
        #expect(HalfPrecision.bfloat16ToFloat(0xC040) == -3)
        #expect(HalfPrecision.float16ToFloat(0x3C00) == 1)
        #expect(HalfPrecision.float16ToFloat(0xC500) == -5)
        #expect(HalfPrecision.float16ToFloat(0x0001) == Float(5.960464477539063e-08))  // smallest subnormal
        #expect(HalfPrecision.float16ToFloat(0x7C00) == .infinity)
        #expect(HalfPrecision.float16ToFloat(0x7E00).isNaN)
        #expect(HalfPrecision.floatToBFloat16(1.00390625) == 0x3F80)  // ties to even
        #expect(HalfPrecision.floatToBFloat16(1.01171875) == 0x3F82)
        for bits in stride(from: UInt16(0), to: 0x7C00, by: 7) {
            #expect(HalfPrecision.floatToFloat16(HalfPrecision.float16ToFloat(bits)) == bits)
        }
    }

    @Test func parallelForEachCoversEveryIndexOnce() {
        let counts = Tensor(zeros: [100_003])
        let pointer = SendablePointer(counts.pointer)
        Parallel.forEach(100_003, costPerItem: 10) { range in for i in range { pointer.pointer[i] += 1 } }
        #expect(counts.array.allSatisfy { $0 == 1 })
    }
}
