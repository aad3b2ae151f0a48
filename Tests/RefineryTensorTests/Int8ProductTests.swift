import CRefineryKernels
import Testing
@testable import RefineryTensor

/// The dynamically quantized int8 products (int8_products.c, `Int8Matrix`).
@Suite struct Int8ProductTests {
    typealias Random = KernelTests.Random

    /// Shapes reaching partial tiles (rows not a multiple of 5), partial panels (features not a
    /// multiple of 16), padded depths (not a multiple of 4), and small batches split by panels.
    static let shapes: [(rows: Int, outFeatures: Int, inFeatures: Int)] = [
        (1, 1, 1), (7, 19, 13), (23, 48, 64), (41, 37, 130), (3, 200, 96), (96, 33, 7),
    ]

    /// Quantizes and multiplies with every instruction set this CPU has; all give the portable bytes and floats.
    @Test func everyInstructionSetGivesThePortableBits() {
        var random = Random(state: 81)
        for (rows, n, k) in Self.shapes {
            let x = random.tensor([rows, k]), w = random.tensor([n, k])
            let depth = rk_i8_depth(k), padded = rk_i8_padded_rows(rows)
            var packed = [Int8](repeating: 0, count: rk_i8_packed_bytes(n, k))
            var scales = [Float](repeating: 0, count: n), sums = [Int32](repeating: 0, count: n)
            #expect(rk_i8_pack_weight(w.pointer, n, k, &packed, &scales, &sums) == 0)
            func run(_ level: Int32, accumulate: Int32, start: Tensor) -> (bytes: [UInt8], out: [Float])? {
                var q = [UInt8](repeating: 7, count: padded * depth)
                var rowScales = [Float](repeating: 0, count: rows), zeros = [Int32](repeating: 0, count: rows)
                guard rk_i8_quantize_rows_at(level, x.pointer, k, rows, k, &q, depth, &rowScales, &zeros) == 1 else { return nil }
                let out = start.copy()
                guard rk_i8_product_at(level, q, depth, rows, rowScales, zeros, packed, scales, sums, k, 0, n, out.pointer, n, accumulate, nil, 0) == 1 else {
                    return nil
                }
                return (q, out.array)
            }
            for accumulate: Int32 in [0, 1] {
                let start = random.tensor([rows, n])
                guard let portable = run(0, accumulate: accumulate, start: start) else {
                    Issue.record("the portable level was refused")
                    continue
                }
                for level: Int32 in 1...2 {
                    guard let other = run(level, accumulate: accumulate, start: start) else {
                        #expect(level > rk_simd_level(), "level \(level) refused on a CPU that has it")
                        continue
                    }
                    #expect(other.bytes == portable.bytes, "quantized rows \(rows)×\(k) at level \(level)")
                    #expect(other.out == portable.out, "product \(rows)×\(n)×\(k) accumulate \(accumulate) at level \(level)")
                }
            }
        }
        #expect(rk_i8_product_at(3, nil, 0, 0, nil, nil, nil, nil, nil, 0, 0, 1, nil, 0, 0, nil, 0) == 0, "no level above AVX-512")
    }

    /// Inputs 0…127 and weights ±63 quantize exactly (scale 1, zero point 0), so the product must be
    /// the exact integer sum. Pairs at the extremes, two of them added in 16 bits (4 · 127 · 63 =
    /// 32004), are the case where AVX2's 16-bit sums would clip if either side had 8 bits.
    @Test func extremeValuesNeverSaturate() throws {
        let rows = 11, n = 18, k = 1000
        let x = Tensor(shape: [rows, k], values: (0..<(rows * k)).map { index in
            let (r, i) = index.quotientAndRemainder(dividingBy: k)
            return r == 0 || i == 0 ? 127 : Float((r * 37 + i * 11) % 128)
        })
        let w = Tensor(shape: [n, k], values: (0..<(n * k)).map { index in
            let (j, i) = index.quotientAndRemainder(dividingBy: k)
            if i == 0 { return 63 }
            return j.isMultiple(of: 2) ? (i.isMultiple(of: 3) ? -63 : 63) : Float((j * 13 + i * 7) % 127 - 63)
        })
        let y = Tensor(zeros: [rows, n])
        try Int8Matrix(quantizing: w).product(x.pointer, rows: rows, into: y.pointer)
        for r in 0..<rows {
            for j in 0..<n {
                var exact = 0
                for i in 0..<k { exact += Int(x.pointer[r * k + i]) * Int(w.pointer[j * k + i]) }
                #expect(y.pointer[r * n + j] == Float(exact), "row \(r) feature \(j)")
            }
        }
    }

    /// The bias (and GELU) the product applies equal the separate passes on its output.
    @Test func biasAndGELUEqualTheirOwnPasses() throws {
        var random = Random(state: 9)
        let rows = 47, n = 50, k = 40
        let x = random.tensor([rows, k]), w = random.tensor([n, k]), bias = random.tensor([n])
        let matrix = try Int8Matrix(quantizing: w)
        for gelu in [false, true] {
            let separate = Tensor(zeros: [rows, n]), fused = Tensor(zeros: [rows, n])
            matrix.product(x.pointer, rows: rows, into: separate.pointer)
            if gelu {
                EncoderKernels.biasGELU(separate.pointer, bias: bias.pointer, rows: rows, cols: n, bfloat16: nil)
            } else {
                EncoderKernels.addBias(separate.pointer, bias: bias.pointer, rows: rows, cols: n)
            }
            matrix.product(x.pointer, rows: rows, into: fused.pointer, bias: bias.pointer, gelu: gelu)
            #expect(fused.array == separate.array, "gelu \(gelu)")
        }
    }

    /// On random values the product stays within 2% of the largest output of the exact product
    /// (7-bit weights per feature, 7-bit rows), and a range of outputs equals those columns of the whole.
    @Test func closeToTheFloatProductAndRangesAgree() throws {
        var random = Random(state: 5)
        let rows = 37, n = 70, k = 300
        let x = random.tensor([rows, k]), w = random.tensor([n, k])
        let matrix = try Int8Matrix(quantizing: w)
        let whole = Tensor(zeros: [rows, n])
        matrix.product(x.pointer, rows: rows, into: whole.pointer)
        var worst = 0.0, largest = 0.0
        for r in 0..<rows {
            for j in 0..<n {
                var exact = 0.0
                for i in 0..<k { exact += Double(x.pointer[r * k + i]) * Double(w.pointer[j * k + i]) }
                worst = max(worst, abs(exact - Double(whole.pointer[r * n + j])))
                largest = max(largest, abs(exact))
            }
        }
        #expect(worst > 0 && worst <= 0.02 * largest, "largest error \(worst) against outputs up to \(largest)")
        let part = Tensor(zeros: [rows, 2 * n])
        matrix.product(x.pointer, rows: rows, outputs: 21..<58, into: part.pointer + 3, ldy: 2 * n)
        for r in 0..<rows {
            for j in 21..<58 { #expect(part.pointer[r * 2 * n + 3 + j - 21] == whole.pointer[r * n + j], "row \(r) feature \(j)") }
            #expect(part.pointer[r * 2 * n + 2] == 0 && part.pointer[r * 2 * n + 3 + 37] == 0, "nothing written outside the range")
        }
    }

    /// A NaN or infinite weight is refused, naming where it is; a non-finite input row gives NaN
    /// outputs (as a float32 product would) on every instruction set, and the other rows are untouched.
    @Test func nonFiniteValuesAreRefusedOrCarried() throws {
        var random = Random(state: 3)
        let bad = random.tensor([4, 9])
        bad.pointer[2 * 9 + 5] = .nan
        #expect { try Int8Matrix(quantizing: bad) } throws: { "\($0)".contains("[2, 5]") && "\($0)".contains("finite") }
        bad.pointer[2 * 9 + 5] = -.infinity
        #expect(throws: (any Error).self) { try Int8Matrix(quantizing: bad) }
        let wide = Tensor(zeros: [1, Int8Matrix.maximumInFeatures + 1])
        #expect { try Int8Matrix(quantizing: wide) } throws: { "\($0)".contains("overflow") }
        let rows = 6, n = 20, k = 24
        let w = random.tensor([n, k]), matrix = try Int8Matrix(quantizing: w)
        let x = random.tensor([rows, k])
        let clean = Tensor(zeros: [rows, n])
        matrix.product(x.pointer, rows: rows, into: clean.pointer)
        for (row, value) in [(1, Float.nan), (4, Float.infinity)] {
            x.pointer[row * k + 7] = value
        }
        let y = Tensor(zeros: [rows, n])
        matrix.product(x.pointer, rows: rows, into: y.pointer)
        for r in 0..<rows {
            let outputs = (0..<n).map { y.pointer[r * n + $0] }
            let allNaN = outputs.allSatisfy { $0.isNaN }
            if r == 1 || r == 4 {
                #expect(allNaN, "row \(r) holds a non-finite input")
            } else {
                #expect(outputs == (0..<n).map { clean.pointer[r * n + $0] }, "row \(r)")
            }
        }
    }
}
