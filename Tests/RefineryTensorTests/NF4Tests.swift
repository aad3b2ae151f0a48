import Foundation
import Testing
@testable import RefineryTensor

/// NF4 with double quantization against bitsandbytes 0.50.2 (scripts/make_nf4_fixture.py): a
/// [136, 130] float32 weight — 276 whole blocks of 64 and one of 16, an all-zero block, a block of
/// exact NF4 levels and midpoints — quantized by `quantize_4bit(nf4, blocksize 64)`, its absmax
/// double-quantized as `compress_statistics=True` does with bitsandbytes' portable kernel (the
/// nearest code, as its CUDA kernel; its CPU kernel's approximate search picks the next code down
/// for 1 of the 277 here — meta.json counts it), and `dequantize_4bit` of the result.
@Suite struct NF4Tests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/nf4")

    static func floats(_ name: String) throws -> [Float] {
        let data = try Data(contentsOf: root.appendingPathComponent(name))
        return data.withUnsafeBytes { raw in (0..<(data.count / 4)).map { Float(bitPattern: UInt32(littleEndian: raw.load(fromByteOffset: $0 * 4, as: UInt32.self))) } }
    }

    static func bytes(_ name: String) throws -> [UInt8] { [UInt8](try Data(contentsOf: root.appendingPathComponent(name))) }

    static func meta() throws -> [String: Any] {
        let object = try JSONSerialization.jsonObject(with: Data(contentsOf: root.appendingPathComponent("meta.json")))
        return try #require(object as? [String: Any])
    }

    @Test func dynamicMapEqualsBitsandbytes() throws {
        let want = try Self.floats("dynamic_map.f32")
        #expect(want.count == 256)
        #expect(DynamicMap.signed.map(\.bitPattern) == want.map(\.bitPattern))
    }

    @Test func quantizingEqualsBitsandbytesBitForBit() throws {
        let meta = try Self.meta()
        let shape = try #require(meta["shape"] as? [Int])
        let input = try Self.floats("input.f32")
        let matrix = input.withUnsafeBufferPointer { NF4Matrix(quantizing: $0.baseAddress!, shape: shape) }
        #expect(matrix.codes == (try Self.bytes("packed.u8")), "4-bit codes")
        let offsetBits = try #require(meta["offset_bits"] as? Int)
        #expect(matrix.offset.bitPattern == UInt32(offsetBits), "absmax mean \(matrix.offset)")
        #expect(matrix.absmaxCodes == (try Self.bytes("absmax_codes.u8")), "8-bit absmax codes")
        #expect(matrix.absmaxScales.map(\.bitPattern) == (try Self.floats("absmax_scales.f32")).map(\.bitPattern))
    }

    @Test func dequantizingEqualsBitsandbytesBitForBit() throws {
        let meta = try Self.meta()
        let shape = try #require(meta["shape"] as? [Int])
        let offsetBits = try #require(meta["offset_bits"] as? Int)
        let matrix = try NF4Matrix(shape: shape, codes: Self.bytes("packed.u8"), absmaxCodes: Self.bytes("absmax_codes.u8"),
                                   absmaxScales: Self.floats("absmax_scales.f32"), offset: Float(bitPattern: UInt32(offsetBits)))
        let want = try Self.floats("dequantized.f32")
        let all = matrix.floatValues()
        #expect((0..<all.count).map { all.pointer[$0].bitPattern } == want.map(\.bitPattern))
        // Any range (here: starting mid-block and mid-byte, ending in the short last block), and in bfloat16.
        let range = 1_001..<want.count
        var part = [Float](repeating: .nan, count: range.count)
        part.withUnsafeMutableBufferPointer { matrix.dequantize(range, into: $0.baseAddress!) }
        #expect(part.map(\.bitPattern) == want[range].map(\.bitPattern))
        var halves = [UInt16](repeating: 0, count: range.count)
        halves.withUnsafeMutableBufferPointer { matrix.dequantizeBFloat16(range, into: $0.baseAddress!) }
        let rounded = BFloat16Storage(rounding: Array(want[range]), count: range.count)
        #expect(halves == (0..<range.count).map { rounded.pointer[$0] })
    }

    @Test func partsThatDoNotFitTheShapeAreRefused() {
        #expect(throws: TensorError.self) {
            try NF4Matrix(shape: [4, 64], codes: [UInt8](repeating: 0, count: 100), absmaxCodes: [0, 0, 0, 0], absmaxScales: [1], offset: 0)
        }
        #expect(throws: TensorError.self) {
            try NF4Matrix(shape: [4, 64], codes: [UInt8](repeating: 0, count: 128), absmaxCodes: [0, 0, 0, 0], absmaxScales: [.nan], offset: 0)
        }
        // Two negative dimensions multiply to a plausible count; a huge one overflows.
        #expect(throws: TensorError.self) {
            try NF4Matrix(shape: [-4, -64], codes: [UInt8](repeating: 0, count: 128), absmaxCodes: [0, 0, 0, 0], absmaxScales: [1], offset: 0)
        }
        #expect(throws: TensorError.self) {
            try NF4Matrix(shape: [Int.max, 2], codes: [], absmaxCodes: [], absmaxScales: [], offset: 0)
        }
    }
}

/// Products with a 4-bit weight against the same products on its dequantized values, in one tile
/// and in several (a tile bound of 16 rows × 130 columns: 9 tiles, the last of 8 rows).
@Suite struct NF4ProductTests {
    @Test(arguments: [ComputeDType.float32, .bfloat16], [Int.max, 16 * 130])
    func productsEqualTheDequantizedWeights(products: ComputeDType, tileValues: Int) throws {
        var random = KernelTests.Random(state: 9)
        let (out, inFeatures, m) = (136, 130, 7)
        let weight = random.tensor([out, inFeatures])
        let nf4 = NF4Matrix(quantizing: weight.pointer, shape: [out, inFeatures])
        let plain = WeightMatrix(nf4.floatValues(), dtype: products, keepFloat: false)
        let x = random.tensor([m, inFeatures]), dy = random.tensor([m, out])
        let y = Tensor(zeros: [m, out]), want = Tensor(zeros: [m, out])
        NF4Product.linear(x.pointer, rows: m, weight: nf4, products: products, into: y.pointer, accumulate: false, tileValues: tileValues)
        BLAS.linear(x.pointer, rows: m, weight: plain, into: want.pointer)
        let dx = Tensor(zeros: [m, inFeatures]), wantDx = Tensor(zeros: [m, inFeatures])
        NF4Product.inputGradient(dy.pointer, rows: m, weight: nf4, products: products, into: dx.pointer, accumulate: false,
                                 tileValues: tileValues)
        BLAS.linearInputGradient(dy.pointer, rows: m, weight: plain, into: wantDx.pointer)
        // Same operands; only the order of the float32 sums may differ between tilings.
        for (got, expected) in [(y, want), (dx, wantDx)] {
            let worst = (0..<got.count).map { abs(got.pointer[$0] - expected.pointer[$0]) }.max() ?? .infinity
            #expect(worst <= 1e-4, "\(products) tiles of \(tileValues): largest difference \(worst)")
        }
        // Accumulating adds onto what is there.
        NF4Product.linear(x.pointer, rows: m, weight: nf4, products: products, into: y.pointer, accumulate: true, tileValues: tileValues)
        #expect((0..<y.count).allSatisfy { abs(y.pointer[$0] - 2 * want.pointer[$0]) <= 2e-4 })
        // Through the weight matrix, as the model calls it.
        let quantized = WeightMatrix(nf4: nf4, products: products)
        #expect(quantized.dtype == products)
        let viaMatrix = Tensor(zeros: [m, out])
        BLAS.linear(x.pointer, rows: m, weight: quantized, into: viaMatrix.pointer)
        #expect((0..<viaMatrix.count).allSatisfy { abs(viaMatrix.pointer[$0] - want.pointer[$0]) <= 1e-4 })
    }
}
