import Foundation
import Testing
@testable import RefineryTensor
import CRefineryKernels

/// The thin-product kernels and the attention built on them, against Double loops, and the promise
/// that the bits do not depend on how the work is cut (which is what makes them thread-count free).
@Suite struct LowRankTests {
    typealias Random = KernelTests.Random

    /// Shapes that reach every tile of the kernel: 4×32 tiles, 16-column strips of 8 rows (6 on
    /// AVX2) with their last rows in blocks of 4, 2 and 1, scalar columns, and inner sizes below
    /// and above 16.
    static let multiplyShapes: [(rows: Int, cols: Int, inner: Int)] = [
        (37, 53, 9), (19, 16, 70), (5, 45, 3), (8, 7, 16), (23, 48, 12), (10, 16, 5),
    ]

    @Test(arguments: multiplyShapes)
    func multiplyMatchesNaiveProduct(shape: (rows: Int, cols: Int, inner: Int)) {
        let (rows, cols, inner) = shape
        var random = Random(state: 11)
        let u = random.tensor([rows, inner]), m = random.tensor([inner, cols]), start = random.tensor([rows, cols])
        for accumulate in [false, true] {
            let y = start.copy()
            LowRank.multiply(u.pointer, ldu: inner, m.pointer, ldm: cols, into: y.pointer, ldy: cols,
                             rows: rows, cols: cols, inner: inner, alpha: 0.75, accumulate: accumulate)
            for t in 0..<rows {
                for n in 0..<cols {
                    var sum = 0.0
                    for j in 0..<inner { sum += Double(u.pointer[t * inner + j]) * Double(m.pointer[j * cols + n]) }
                    let want = 0.75 * sum + (accumulate ? Double(start.pointer[t * cols + n]) : 0)
                    #expect(abs(Double(y.pointer[t * cols + n]) - want) < 1e-5, "row \(t) column \(n) accumulate \(accumulate)")
                }
            }
        }
    }

    @Test func gramMatchesNaiveProduct() {
        let (depth, rank, cols) = (29, 11, 53)
        var random = Random(state: 12)
        let p = random.tensor([depth, rank]), q = random.tensor([depth, cols]), start = random.tensor([rank, cols])
        let c = start.copy()
        LowRank.gram(p.pointer, ldp: rank, q.pointer, ldq: cols, into: c.pointer, ldc: cols, depth: depth, rank: rank, cols: cols, alpha: 1.5)
        for j in 0..<rank {
            for n in 0..<cols {
                var sum = 0.0
                for t in 0..<depth { sum += Double(p.pointer[t * rank + j]) * Double(q.pointer[t * cols + n]) }
                #expect(abs(Double(c.pointer[j * cols + n]) - (Double(start.pointer[j * cols + n]) + 1.5 * sum)) < 1e-5)
            }
        }
    }

    /// One call over everything versus one call per row or per column: identical bits, so no cut
    /// of the work over threads can change a result.
    /// Rows 29...37 leave every remainder of the 6- and 8-row strips (blocks of 4, 2 and 1).
    @Test(arguments: 29...37)
    func resultsDoNotDependOnHowTheWorkIsCut(rows: Int) {
        let (cols, inner) = (53, 21)
        var random = Random(state: UInt64(13 + rows))
        let u = random.tensor([rows, inner]), m = random.tensor([inner, cols])
        let whole = Tensor(zeros: [rows, cols]), byRow = Tensor(zeros: [rows, cols]), byColumn = Tensor(zeros: [rows, cols])
        rk_lowrank_expand(u.pointer, inner, m.pointer, cols, whole.pointer, cols, rows, cols, inner, 0.5, 0)
        for t in 0..<rows {
            rk_lowrank_expand(u.pointer + t * inner, inner, m.pointer, cols, byRow.pointer + t * cols, cols, 1, cols, inner, 0.5, 0)
        }
        for n in 0..<cols {
            rk_lowrank_expand(u.pointer, inner, m.pointer + n, cols, byColumn.pointer + n, cols, rows, 1, inner, 0.5, 0)
        }
        #expect(whole.array == byRow.array)
        #expect(whole.array == byColumn.array)

        let p = random.tensor([rows, inner]), q = random.tensor([rows, cols])
        let gramWhole = Tensor(zeros: [inner, cols]), gramByColumn = Tensor(zeros: [inner, cols]), gramByRank = Tensor(zeros: [inner, cols])
        rk_lowrank_gram(p.pointer, inner, q.pointer, cols, gramWhole.pointer, cols, rows, inner, cols, 2)
        for n in 0..<cols {
            rk_lowrank_gram(p.pointer, inner, q.pointer + n, cols, gramByColumn.pointer + n, cols, rows, inner, 1, 2)
        }
        for j in 0..<inner {
            rk_lowrank_gram(p.pointer + j, inner, q.pointer, cols, gramByRank.pointer + j * cols, cols, rows, 1, cols, 2)
        }
        #expect(gramWhole.array == gramByColumn.array)
        #expect(gramWhole.array == gramByRank.array)
    }

    /// Every instruction set this CPU has (portable, AVX2, AVX-512: each with its own tiles) gives
    /// the portable build's bits, on shapes that reach every tile of each.
    @Test func everyInstructionSetGivesThePortableBits() {
        var random = Random(state: 14)
        for (rows, cols, inner) in Self.multiplyShapes + [(228, 240, 32), (228, 32, 228), (13, 97, 40)] {
            let u = random.tensor([rows, inner]), m = random.tensor([inner, cols]), start = random.tensor([rows, cols])
            for accumulate: Int32 in [0, 1] {
                let portable = start.copy()
                #expect(rk_lowrank_expand_at(0, u.pointer, inner, m.pointer, cols, portable.pointer, cols, rows, cols, inner, 0.75, accumulate) == 1)
                for level: Int32 in 1...2 {
                    let y = start.copy()
                    guard rk_lowrank_expand_at(level, u.pointer, inner, m.pointer, cols, y.pointer, cols, rows, cols, inner, 0.75, accumulate) == 1 else {
                        #expect(level > rk_simd_level(), "level \(level) refused on a CPU that has it")
                        continue
                    }
                    #expect(y.array == portable.array, "expand \(rows)×\(cols)×\(inner) accumulate \(accumulate) at level \(level)")
                }
            }
            // gram: pᵀ·q with p [depth = rows, rank = inner].
            let p = random.tensor([rows, inner]), q = random.tensor([rows, cols]), begin = random.tensor([inner, cols])
            let portable = begin.copy()
            #expect(rk_lowrank_gram_at(0, p.pointer, inner, q.pointer, cols, portable.pointer, cols, rows, inner, cols, 1.5) == 1)
            for level: Int32 in 1...2 {
                let c = begin.copy()
                guard rk_lowrank_gram_at(level, p.pointer, inner, q.pointer, cols, c.pointer, cols, rows, inner, cols, 1.5) == 1 else { continue }
                #expect(c.array == portable.array, "gram \(rows)×\(inner)×\(cols) at level \(level)")
            }
        }
        #expect(rk_lowrank_expand_at(3, nil, 0, nil, 0, nil, 0, 0, 0, 0, 1, 0) == 0, "no level above AVX-512")
    }

    /// Attention's backward against the gradients written out by hand, in Double, over two query
    /// blocks with a packed (block-diagonal) mask; in bfloat16 its products round their operands.
    @Test(arguments: ComputeDType.allCases)
    func attentionBackwardMatchesNaiveGradients(products: ComputeDType) {
        let t = 70, heads = 4, kvHeads = 2, d = 8
        let keyStart = (0..<t).map { $0 < 40 ? 0 : 40 }
        var random = Random(state: 14)
        let q = random.tensor([t, heads * d]), k = random.tensor([t, kvHeads * d]), v = random.tensor([t, kvHeads * d])
        let dOut = random.tensor([t, heads * d])
        let dQ = Tensor(zeros: [t, heads * d]), dK = Tensor(zeros: [t, kvHeads * d]), dV = Tensor(zeros: [t, kvHeads * d])
        let out = Tensor(zeros: [t, heads * d])
        let probabilities = Tensor(zeros: [Attention.probabilityCount(queryCount: t, keyCount: t, heads: heads, kvHeads: kvHeads, keyStart: keyStart)])
        Attention.causal(q: q.pointer, qStride: heads * d, k: k.pointer, v: v.pointer, kvStride: kvHeads * d, out: out.pointer,
                         outStride: heads * d, queryCount: t, keyCount: t, heads: heads, kvHeads: kvHeads, headDim: d,
                         keyStart: keyStart, probabilities: probabilities.pointer)
        Attention.backward(q: q.pointer, k: k.pointer, v: v.pointer, dOut: dOut.pointer, dQ: dQ.pointer, dK: dK.pointer, dV: dV.pointer,
                           count: t, heads: heads, kvHeads: kvHeads, headDim: d, keyStart: keyStart,
                           probabilities: probabilities.pointer, products: products)
        var wantQ = [Double](repeating: 0, count: t * heads * d)
        var wantK = [Double](repeating: 0, count: t * kvHeads * d), wantV = wantK
        let scale = 1 / Double(d).squareRoot()
        func at(_ x: Tensor, _ row: Int, _ stride: Int, _ offset: Int) -> Double { Double(x.pointer[row * stride + offset]) }
        for h in 0..<heads {
            let kv = h / (heads / kvHeads)
            for i in 0..<t {
                let keys = Array(keyStart[i]...i)
                let scores = keys.map { j in (0..<d).reduce(0.0) { $0 + at(q, i, heads * d, h * d + $1) * at(k, j, kvHeads * d, kv * d + $1) } * scale }
                let top = scores.max() ?? 0
                let exps = scores.map { exp($0 - top) }
                let total = exps.reduce(0, +)
                let probabilities = exps.map { $0 / total }
                let dP = keys.map { j in (0..<d).reduce(0.0) { $0 + at(dOut, i, heads * d, h * d + $1) * at(v, j, kvHeads * d, kv * d + $1) } }
                let dot = zip(probabilities, dP).reduce(0.0) { $0 + $1.0 * $1.1 }
                for (n, j) in keys.enumerated() {
                    let dS = probabilities[n] * (dP[n] - dot)
                    for c in 0..<d {
                        wantQ[i * heads * d + h * d + c] += dS * at(k, j, kvHeads * d, kv * d + c) * scale
                        wantK[j * kvHeads * d + kv * d + c] += dS * at(q, i, heads * d, h * d + c) * scale
                        wantV[j * kvHeads * d + kv * d + c] += probabilities[n] * at(dOut, i, heads * d, h * d + c)
                    }
                }
            }
        }
        for (got, want, name) in [(dQ, wantQ, "dQ"), (dK, wantK, "dK"), (dV, wantV, "dV")] {
            let worst = zip(got.array, want).map { abs(Double($0) - $1) }.max() ?? 0
            let scale = want.map(abs).max() ?? 1
            // float32: rounding only; bfloat16: operands with 8 bits of mantissa, float32 sums.
            #expect(worst < (products == .float32 ? 1e-5 : 2e-2 * scale), "\(name) differs by \(worst) (largest \(scale))")
        }
        if products == .bfloat16 {
            let float = (dQ: Tensor(zeros: [t, heads * d]), dK: Tensor(zeros: [t, kvHeads * d]), dV: Tensor(zeros: [t, kvHeads * d]))
            Attention.backward(q: q.pointer, k: k.pointer, v: v.pointer, dOut: dOut.pointer, dQ: float.dQ.pointer, dK: float.dK.pointer,
                               dV: float.dV.pointer, count: t, heads: heads, kvHeads: kvHeads, headDim: d, keyStart: keyStart,
                               probabilities: probabilities.pointer)
            #expect((dQ.array != float.dQ.array && dK.array != float.dK.array && dV.array != float.dV.array) == ProductBackend.current.hasBFloat16Kernels,
                    "bf16 products run on oneDNN's bfloat16 kernels (and only there)")
        }
    }
}
