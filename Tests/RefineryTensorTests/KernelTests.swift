import CRefineryKernels
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

    /// Softmax rows of many lengths (whole vectors, tails, one value) against float64, and the
    /// bfloat16 probabilities (their own, shorter exp): each the correctly rounded float64 value or
    /// its neighbour (a value within float32's error of a rounding boundary), zeros past `n`.
    @Test(arguments: [1, 5, 15, 16, 17, 31, 32, 33, 228, 500])
    func softmaxRowsMatchFloat64AndRoundLikeTheConversion(n: Int) {
        var random = Random(state: UInt64(n))
        let rows = 3, width = (n + 15) / 16 * 16 + 16
        let scores = (0..<rows * width).map { _ in random.next() * 30 }
        var inPlace = scores
        for row in 0..<rows {
            inPlace.withUnsafeMutableBufferPointer { rk_softmax($0.baseAddress! + row * width, n) }
            let logits = scores[(row * width)..<(row * width + n)].map(Double.init)
            let top = logits.max() ?? 0
            let total = logits.reduce(0) { $0 + exp($1 - top) }
            for i in 0..<n {
                // float32's x − max is rounded (relative error |x − max| · 2⁻²⁴ after exp), then exp's own ~2e-7.
                let want = exp(logits[i] - top) / total
                let tolerance = want * (1e-6 + (top - logits[i]) * 1.2e-7) + 1e-37
                #expect(abs(Double(inPlace[row * width + i]) - want) <= tolerance, "row \(row) column \(i)")
            }
        }
        var scratch = scores
        var probabilities = [UInt16](repeating: 0xFFFF, count: rows * width)
        scratch.withUnsafeMutableBufferPointer { s in
            probabilities.withUnsafeMutableBufferPointer { rk_softmax_rows_bf16(s.baseAddress!, width, rows, n, width, $0.baseAddress!) }
        }
        for row in 0..<rows {
            let logits = scores[(row * width)..<(row * width + n)].map(Double.init)
            let top = logits.max() ?? 0
            let total = logits.reduce(0) { $0 + exp($1 - top) }
            for i in 0..<n {
                let want = HalfPrecision.floatToBFloat16(Float(exp(logits[i] - top) / total))
                let got = probabilities[row * width + i]
                #expect(abs(Int(got) - Int(want)) <= 1, "row \(row) column \(i): bits \(got), correctly rounded \(want)")
            }
            #expect(probabilities[(row * width + n)..<((row + 1) * width)].allSatisfy { $0 == 0 })
        }
    }

    /// Grouped-query causal attention (with a block-diagonal mask) against a naive loop.
    /// Two query blocks (64 + 6 rows, so bfloat16 products run), packed rows restarting at 40.
    @Test(arguments: ComputeDType.allCases)
    func attentionMatchesNaiveGroupedQueryAttention(products: ComputeDType) {
        var random = Random(state: 3)
        let t = 70, heads = 6, kvHeads = 2, d = 16
        let q = random.tensor([t, heads * d]), k = random.tensor([t, kvHeads * d]), v = random.tensor([t, kvHeads * d])
        let keyStart = (0..<t).map { $0 < 40 ? 0 : 40 }
        func attend(_ products: ComputeDType) -> Tensor {
            let out = Tensor(zeros: [t, heads * d])
            Attention.causal(q: q.pointer, qStride: heads * d, k: k.pointer, v: v.pointer, kvStride: kvHeads * d,
                             out: out.pointer, outStride: heads * d, queryCount: t, keyCount: t, heads: heads,
                             kvHeads: kvHeads, headDim: d, keyStart: keyStart, products: products)
            return out
        }
        let out = attend(products)
        // float32: rounding only. bfloat16: queries, keys, probabilities and values rounded to 8 bits of mantissa.
        let tolerance = products == .float32 ? 1e-5 : 2e-2
        var worst = 0.0
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
                    worst = max(worst, abs(Double(out.pointer[i * heads * d + h * d + c]) - want))
                }
            }
        }
        #expect(worst < tolerance, "\(products): max error \(worst)")
        if products == .bfloat16 {
            let float = attend(.float32)
            let differs = (0..<out.count).contains { out.pointer[$0] != float.pointer[$0] }
            #expect(differs == ProductBackend.current.hasBFloat16Kernels, "bf16 products run on oneDNN's bfloat16 kernels (and only there)")
        }
    }

    @Test func rotaryMatchesTheDefinitionAndItsBackwardUndoesIt() {
        var random = Random(state: 11)
        let rows = 3, heads = 2, headDim = 38, half = headDim / 2
        let x = random.tensor([rows, heads * headDim]), original = x.copy()
        let cos = Tensor(shape: [5, half], values: (0..<(5 * half)).map { Foundation.cos(Float($0) * 0.37) })
        let sin = Tensor(shape: [5, half], values: (0..<(5 * half)).map { Foundation.sin(Float($0) * 0.37) })
        let positions = [4, 0, 2]
        Kernels.applyRotary(x.pointer, rows: rows, heads: heads, headDim: headDim, rowStride: heads * headDim,
                            positions: positions, cos: cos.pointer, sin: sin.pointer)
        var worst: Double = 0
        for row in 0..<rows {
            for head in 0..<heads {
                for i in 0..<half {
                    let base = row * heads * headDim + head * headDim
                    let a = Double(original.pointer[base + i]), b = Double(original.pointer[base + i + half])
                    let c = Double(cos.pointer[positions[row] * half + i]), s = Double(sin.pointer[positions[row] * half + i])
                    worst = max(worst, abs(Double(x.pointer[base + i]) - (a * c - b * s)), abs(Double(x.pointer[base + i + half]) - (b * c + a * s)))
                }
            }
        }
        #expect(worst < 1e-6)
        // The backward pass reads table rows in row order: gather the rows the forward used.
        let rowCos = Tensor(shape: [rows, half], values: positions.flatMap { p in (0..<half).map { cos.pointer[p * half + $0] } })
        let rowSin = Tensor(shape: [rows, half], values: positions.flatMap { p in (0..<half).map { sin.pointer[p * half + $0] } })
        BackwardKernels.applyRotaryBackward(x.pointer, rows: rows, heads: heads, headDim: headDim, rowStride: heads * headDim,
                                            cos: rowCos.pointer, sin: rowSin.pointer)
        let back = (0..<x.count).map { abs(x.pointer[$0] - original.pointer[$0]) }.max() ?? 1
        #expect(back < 1e-6, "rotating by θ then −θ gives the input back (error \(back))")
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

/// The thread pool and the products cut into blocks over it.
@Suite struct ParallelProductTests {
    /// Every case of transposition, the three cuts (columns when m ≤ n, rows otherwise, depth when
    /// k ≥ 4·max(m, n)), padded leading dimensions and beta = 1, against a Double reference; big
    /// enough to be cut.
    @Test(arguments: [(false, true, 40, 300, 200), (false, false, 300, 40, 200), (true, false, 256, 130, 90), (true, true, 130, 256, 90),
                      (false, false, 20, 24, 5000), (true, true, 24, 20, 5000), (false, true, 24, 20, 5000), (true, false, 20, 24, 5000)])
    func cutProductsMatchReference(_ shape: (Bool, Bool, Int, Int, Int)) {
        let (transA, transB, m, n, k) = shape
        var random = KernelTests.Random(state: UInt64(m * 7 + n))
        let lda = (transA ? m : k) + 3, ldb = (transB ? k : n) + 5, ldc = n + 2
        let a = random.tensor([(transA ? k : m) * lda]), b = random.tensor([(transB ? n : k) * ldb])
        let initial = random.tensor([m * ldc])
        func element(_ tensor: Tensor, _ row: Int, _ col: Int, _ ld: Int, transposed: Bool) -> Double {
            Double(transposed ? tensor.pointer[col * ld + row] : tensor.pointer[row * ld + col])
        }
        for parts in [1, 2, 3, 5] {
            let c = initial.copy()
            BLAS.gemm(parts: parts, transA: transA, transB: transB, m: m, n: n, k: k, alpha: 0.5, a: a.pointer, lda: lda,
                      b: b.pointer, ldb: ldb, beta: 1, c: c.pointer, ldc: ldc)
            var worst = 0.0
            for row in 0..<m {
                for col in 0..<n {
                    var sum = 0.0
                    for i in 0..<k { sum += element(a, row, i, lda, transposed: transA) * element(b, i, col, ldb, transposed: transB) }
                    let expected = 0.5 * sum + Double(initial.pointer[row * ldc + col])
                    worst = max(worst, abs(Double(c.pointer[row * ldc + col]) - expected))
                }
                // The padding between rows is never written.
                for col in n..<ldc { #expect(c.pointer[row * ldc + col] == initial.pointer[row * ldc + col]) }
            }
            #expect(worst < 1e-4, "parts \(parts): worst error \(worst)")
        }
    }

    @Test func poolRunsEveryIndexOnceAndNestedCallsInline() {
        for count in [1, 2, 3, 17, 1000] {
            let counts = Tensor(zeros: [count * 4])
            let pointer = SendablePointer(counts.pointer)
            Parallel.run(count) { index in
                pointer.pointer[index * 4] += 1
                // A nested call while the pool is busy runs inline, still once per index.
                Parallel.run(3) { inner in pointer.pointer[index * 4 + 1 + inner] += 1 }
            }
            #expect(counts.array.allSatisfy { $0 == 1 }, "count \(count)")
        }
    }

    @Test func poolServesConcurrentCallers() {
        let callers = 6, count = 500
        let counts = Tensor(zeros: [callers * count])
        let pointer = SendablePointer(counts.pointer)
        DispatchQueue.concurrentPerform(iterations: callers) { caller in
            for _ in 0..<20 {
                Parallel.run(count) { index in pointer.pointer[caller * count + index] += 1 }
            }
        }
        #expect(counts.array.allSatisfy { $0 == 20 })
    }
}

/// bfloat16 conversions and products (issue 11), on both product backends in one process.
@Suite struct BFloat16ProductTests {
    @Test func roundingMatchesTheScalarRuleForEveryKindOfValue() {
        var values: [Float] = [0, -0, 1, -1, .infinity, -.infinity, .nan, .leastNonzeroMagnitude, -.leastNormalMagnitude,
                               .greatestFiniteMagnitude, 1.00390625, 1.01171875, 3.3895314e38]
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<10_000 { values.append(Float(bitPattern: UInt32.random(in: 0...UInt32.max, using: &generator))) }
        let storage = values.withUnsafeBufferPointer { BFloat16Storage(rounding: $0.baseAddress!, count: values.count) }
        for (i, value) in values.enumerated() {
            let want = HalfPrecision.floatToBFloat16(value)
            if value.isNaN {
                #expect(HalfPrecision.bfloat16ToFloat(storage.pointer[i]).isNaN)
            } else {
                #expect(storage.pointer[i] == want, "\(value)")
            }
        }
        let widened = Tensor(uninitialized: [values.count])
        BFloat16Storage.widen(storage.pointer, into: widened.pointer, count: values.count)
        for i in values.indices where !values[i].isNaN {
            #expect(widened.pointer[i] == HalfPrecision.bfloat16ToFloat(storage.pointer[i]))
        }
    }

    /// The encoder's fused products (bias, with or without the exact-erf GELU, and the rounding in
    /// oneDNN's epilogue) against float64 sums (through the exact GELU): within one bfloat16 step of the
    /// correctly rounded value, on a product run whole, one cut by columns and one cut by rows. On
    /// OpenBLAS, or oneDNN without bfloat16 kernels (a CPU without AVX-512), it declines, so the
    /// encoder runs the unfused passes.
    @Test func fusedLinearIsTheLayerRoundedOnce() {
        var random = KernelTests.Random(state: 11)
        // Run whole; cut by columns (n·k streamed ≥ 2¹⁷); cut by rows (m·n·k ≥ 2²¹).
        let shapes = [(5, 48, 32), (8, 1536, 96), (600, 32, 128)]
        for ((rows, outFeatures, inFeatures), gelu) in shapes.flatMap({ shape in [(shape, true), (shape, false)] }) {
            let x = (0..<(rows * inFeatures)).map { _ in random.next() }, w = (0..<(outFeatures * inFeatures)).map { _ in random.next() }
            let bias = (0..<outFeatures).map { _ in random.next() }
            let x16 = x.withUnsafeBufferPointer { BFloat16Storage(rounding: $0.baseAddress!, count: x.count) }
            let w16 = w.withUnsafeBufferPointer { BFloat16Storage(rounding: $0.baseAddress!, count: w.count) }
            let y = UnsafeMutablePointer<UInt16>.allocate(capacity: rows * outFeatures)
            defer { y.deallocate() }
            let fused = bias.withUnsafeBufferPointer {
                BLAS.linearBiasBF16(x16.pointer, rows: rows, weight: w16.pointer, outFeatures: outFeatures, inFeatures: inFeatures,
                                    bias: $0.baseAddress!, gelu: gelu, into: y)
            }
            guard ProductBackend.current.hasBFloat16Kernels else {
                #expect(!fused, "only oneDNN's bfloat16 kernels fuse")
                continue
            }
            #expect(fused)
            let xs = (0..<x.count).map { Double(HalfPrecision.bfloat16ToFloat(x16.pointer[$0])) }
            let ws = (0..<w.count).map { Double(HalfPrecision.bfloat16ToFloat(w16.pointer[$0])) }
            var worst = 0.0
            for i in 0..<rows {
                for j in 0..<outFeatures {
                    var sum = Double(bias[j])
                    for p in 0..<inFeatures { sum += xs[i * inFeatures + p] * ws[j * inFeatures + p] }
                    let exact = gelu ? 0.5 * sum * (1 + erf(sum / 2.0.squareRoot())) : sum
                    let want = Double(HalfPrecision.bfloat16ToFloat(HalfPrecision.floatToBFloat16(Float(exact))))
                    let got = Double(HalfPrecision.bfloat16ToFloat(y[i * outFeatures + j]))
                    // One step of bfloat16 at this magnitude: 2^-7 of the value (plus a floor near zero).
                    let step = max(abs(want) / 128, 1e-6)
                    worst = max(worst, abs(got - want) / step)
                }
            }
            #expect(worst <= 1, "\(rows)×\(outFeatures)×\(inFeatures) gelu \(gelu): off by \(worst) bfloat16 steps")
        }
    }

    @Test(arguments: ProductBackend.allCases)
    func bf16ProductsSumInFloat32OnEveryCut(backend: ProductBackend) {
        var random = KernelTests.Random(state: 7)
        for (m, n, k, transA, transB) in [(37, 300, 70, false, true), (300, 20, 90, true, false), (64, 48, 2000, false, false), (1, 200, 64, false, true)] {
            let a = (0..<(m * k)).map { _ in random.next() }, b = (0..<(k * n)).map { _ in random.next() }
            let a16 = a.withUnsafeBufferPointer { BFloat16Storage(rounding: $0.baseAddress!, count: a.count) }
            let b16 = b.withUnsafeBufferPointer { BFloat16Storage(rounding: $0.baseAddress!, count: b.count) }
            func value(_ s: BFloat16Storage, _ i: Int) -> Double { Double(HalfPrecision.bfloat16ToFloat(s.pointer[i])) }
            let (lda, ldb) = (transA ? m : k, transB ? k : n)
            func product(parts: Int) -> [Float] {
                let c = Tensor(zeros: [m, n])
                for i in 0..<(m * n) { c.pointer[i] = 0.5 }
                BLAS.gemmBF16(parts: parts, backend: backend, transA: transA, transB: transB, m: m, n: n, k: k, alpha: 2,
                              a: a16.pointer, lda: lda, b: b16.pointer, ldb: ldb, beta: 1, c: c.pointer, ldc: n)
                return c.array
            }
            for parts in [1, 2, 3] {
                let c = product(parts: parts)
                for i in 0..<m {
                    for j in 0..<n {
                        var sum = 0.0
                        for p in 0..<k {
                            sum += value(a16, transA ? p * lda + i : i * lda + p) * value(b16, transB ? j * ldb + p : p * ldb + j)
                        }
                        let want = 2 * sum + 0.5
                        #expect(abs(Double(c[i * n + j]) - want) <= 1e-4 * (1 + abs(want)), "\(backend) \(m)×\(n)×\(k) [\(i),\(j)]")
                    }
                }
                #expect(c == product(parts: parts), "same cut, same bits")
            }
        }
    }
}
