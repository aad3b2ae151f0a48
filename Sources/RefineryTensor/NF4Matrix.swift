import CRefineryKernels

/// A frozen weight in QLoRA's 4-bit NormalFloat with double quantization, laid out and rounded as
/// bitsandbytes' `quantize_4bit(quant_type="nf4", blocksize=64, compress_statistics=True)`:
///
/// - the row-major values, flattened, in blocks of 64 (the last may be shorter); each block's
///   absmax scales it to [-1, 1] (a whole block multiplies by `1/absmax`, the last, partial one
///   divides, and its absmax is at least 1e-38); each value takes the nearest of the 16 NF4
///   levels (on a midpoint, the lower); two 4-bit codes per byte, the first in the high nibble;
/// - the absmax themselves minus their mean (`offset`), in blocks of 256, scaled the same way and
///   coded to 8 bits with the signed dynamic map (`DynamicMap.signed`), one float32 scale per 256.
///
/// Storage is 0.5 byte per value plus ~1/64 + 1/4096 byte for the statistics (~4.13 bits).
public final class NF4Matrix: @unchecked Sendable {
    /// Values per 4-bit block.
    public static let blockSize = 64
    /// Absmax values per 8-bit block.
    public static let absmaxBlockSize = 256

    /// `[rows, cols]`.
    public let shape: [Int]
    /// Two codes per byte.
    public let codes: [UInt8]
    /// The 8-bit code of each block's absmax minus `offset`.
    public let absmaxCodes: [UInt8]
    /// The scale of each 256 absmax codes.
    public let absmaxScales: [Float]
    /// The mean of the blocks' absmax.
    public let offset: Float

    /// Number of values.
    public var count: Int { shape.reduce(1, *) }
    /// Number of 64-value blocks.
    public var blockCount: Int { (count + Self.blockSize - 1) / Self.blockSize }

    /// Takes quantized parts as they are (a cache file, a test fixture); checks their sizes.
    public init(shape: [Int], codes: [UInt8], absmaxCodes: [UInt8], absmaxScales: [Float], offset: Float) throws {
        let product = shape.count == 2 && shape.allSatisfy({ $0 > 0 }) ? shape[0].multipliedReportingOverflow(by: shape[1]) : (partialValue: 0, overflow: true)
        guard !product.overflow, product.partialValue < Int.max / 2 else {
            throw TensorError("NF4 shape \(shape) is not two positive dimensions of a representable size")
        }
        let count = product.partialValue, blocks = (count + Self.blockSize - 1) / Self.blockSize
        guard codes.count == (count + 1) / 2, absmaxCodes.count == blocks,
              absmaxScales.count == (blocks + Self.absmaxBlockSize - 1) / Self.absmaxBlockSize, offset.isFinite,
              absmaxScales.allSatisfy(\.isFinite) else {
            throw TensorError("NF4 parts do not fit shape \(shape): \(codes.count) code bytes, \(absmaxCodes.count) block codes, "
                              + "\(absmaxScales.count) scales (expected \((count + 1) / 2), \(blocks), "
                              + "\((blocks + Self.absmaxBlockSize - 1) / Self.absmaxBlockSize))")
        }
        self.shape = shape
        self.codes = codes
        self.absmaxCodes = absmaxCodes
        self.absmaxScales = absmaxScales
        self.offset = offset
    }

    /// Quantizes `values` (`shape` row-major, finite) on all threads — deterministic: the same
    /// bits on every machine and thread count.
    public init(quantizing values: UnsafePointer<Float>, shape: [Int]) {
        precondition(shape.count == 2 && shape.reduce(1, *) > 0, "NF4Matrix: shape \(shape)")
        let count = shape.reduce(1, *)
        self.shape = shape
        let levelMidpoints = DynamicMap.midpoints(Array(UnsafeBufferPointer(start: rk_nf4_levels(), count: 16)))
        let (codes, absmax) = Self.quantizeBlocks(values, count: count, blockSize: Self.blockSize, midpoints: levelMidpoints)
        // Two codes per byte, the first in the high nibble; an odd count is padded with level 7 (zero), as bitsandbytes pads.
        self.codes = [UInt8](unsafeUninitializedCapacity: (count + 1) / 2) { bytes, initialized in
            for pair in 0..<(count / 2) { bytes[pair] = codes[2 * pair] << 4 | codes[2 * pair + 1] }
            if count % 2 == 1 { bytes[count / 2] = codes[count - 1] << 4 | 7 }
            initialized = (count + 1) / 2
        }
        // The absmax mean in double, rounded once (equals torch's float32 mean on the fixture).
        let mean = Float(absmax.reduce(0.0) { $0 + Double($1) } / Double(absmax.count))
        offset = mean
        let centred = absmax.map { $0 - mean }
        let (blockCodes, scales) = centred.withUnsafeBufferPointer {
            Self.quantizeBlocks($0.baseAddress.unsafelyUnwrapped, count: centred.count, blockSize: Self.absmaxBlockSize,
                                midpoints: DynamicMap.signedMidpoints)
        }
        absmaxCodes = blockCodes
        absmaxScales = scales
    }

    /// The dequantized absmax of blocks `blocks` (`dynamic map[code] · scale + offset`, in float32).
    public func blockScales(_ blocks: Range<Int>) -> [Float] {
        let map = DynamicMap.signed
        return blocks.map { block in
            map[Int(absmaxCodes[block])] * absmaxScales[block / Self.absmaxBlockSize] + offset
        }
    }

    /// Dequantizes the flat values `range` into `out` (float32).
    public func dequantize(_ range: Range<Int>, into out: UnsafeMutablePointer<Float>) {
        withKernelOperands(range) { rk_nf4_dequantize($0, $1, Self.blockSize, range.lowerBound, range.count, out) }
    }

    /// Dequantizes the flat values `range` into `out`, rounded to bfloat16 (as `rk_f32_to_bf16` rounds).
    public func dequantizeBFloat16(_ range: Range<Int>, into out: UnsafeMutablePointer<UInt16>) {
        withKernelOperands(range) { rk_nf4_dequantize_bf16($0, $1, Self.blockSize, range.lowerBound, range.count, out) }
    }

    /// Calls `body(codes, scales of the blocks range touches)` for a non-empty `range`.
    private func withKernelOperands(_ range: Range<Int>, _ body: (UnsafePointer<UInt8>?, UnsafePointer<Float>?) -> Void) {
        guard !range.isEmpty else { return }
        let scales = blockScales((range.lowerBound / Self.blockSize)..<((range.upperBound - 1) / Self.blockSize + 1))
        codes.withUnsafeBufferPointer { c in scales.withUnsafeBufferPointer { s in body(c.baseAddress, s.baseAddress) } }
    }

    /// Every value, dequantized (exports, merging).
    public func floatValues() -> Tensor {
        let result = Tensor(uninitialized: shape)
        let (s, total) = (SendablePointer(result.pointer), count)
        let rowsPerBlock = Self.blockSize * 64
        Parallel.forEach((total + rowsPerBlock - 1) / rowsPerBlock, costPerItem: rowsPerBlock * 2) { chunks in
            let start = chunks.lowerBound * rowsPerBlock, end = min(total, chunks.upperBound * rowsPerBlock)
            self.dequantize(start..<end, into: s.pointer + start)
        }
        return result
    }

    /// Codes `count` values in blocks of `blockSize` by the nearest of the levels whose `midpoints`
    /// are given (one code per value) and returns them with each block's stored absmax.
    private static func quantizeBlocks(_ values: UnsafePointer<Float>, count: Int, blockSize: Int,
                                       midpoints: [Float]) -> (codes: [UInt8], absmax: [Float]) {
        let blocks = (count + blockSize - 1) / blockSize
        var codes = [UInt8](repeating: 0, count: count), absmax = [Float](repeating: 0, count: blocks)
        let source = SendablePointer(UnsafeMutablePointer(mutating: values))
        codes.withUnsafeMutableBufferPointer { c in
            absmax.withUnsafeMutableBufferPointer { a in
                midpoints.withUnsafeBufferPointer { m in
                    let (cs, as_, ms) = (SendablePointer(c.baseAddress.unsafelyUnwrapped), SendablePointer(a.baseAddress.unsafelyUnwrapped),
                                         SendablePointer(UnsafeMutablePointer(mutating: m.baseAddress.unsafelyUnwrapped)))
                    let levels = m.count
                    Parallel.forEach(blocks, costPerItem: blockSize * 16) { range in
                        for block in range {
                            let start = block * blockSize, length = min(blockSize, count - start)
                            as_.pointer[block] = rk_quantize_block(source.pointer + start, length, length == blockSize ? 1 : 0,
                                                                   ms.pointer, levels, cs.pointer + start)
                        }
                    }
                }
            }
        }
        return (codes, absmax)
    }
}
