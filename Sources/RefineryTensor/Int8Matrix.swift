import CRefineryKernels

/// A linear layer's weight `[out, in]` for dynamically quantized int8 products — what PyTorch's
/// `quantize_dynamic` does to a `Linear`, with finer scales: each output feature is quantized on
/// its own to −63…63, and every call quantizes each input row on its own to 0…127 with a zero
/// point (7 bits each, so AVX2's 8-bit multiply-adds can never saturate, even two of them summed
/// in 16 bits). Sums are exact in int32 and scaled back to float32. On AVX2 the products run at
/// ~2.2× the float32 rate; values move by about 1% of a row's largest output (the bench prints
/// the effect on a classifier's logits).
public final class Int8Matrix: @unchecked Sendable {
    /// The most input features whose exact sums fit an int32: ⌊(2³¹ − 1) / (2 · 127 · 63)⌋ (the sum
    /// and the zero point's correction are each at most 127 · 63 per feature).
    public static let maximumInFeatures = Int(Int32.max) / (2 * 127 * 63)

    /// Output features (rows of the float weight).
    public let outFeatures: Int
    /// Input features (columns of the float weight).
    public let inFeatures: Int
    private let packed: UnsafeMutablePointer<Int8>
    private let scales: UnsafeMutablePointer<Float>
    private let sums: UnsafeMutablePointer<Int32>

    /// Quantizes `weight` (`[out, in]`, float32); throws when a value is NaN or infinite (it has no
    /// integer to stand for it, where a float32 product would carry it into every output).
    public init(quantizing weight: Tensor) throws {
        guard weight.shape.count == 2 else { throw TensorError("an int8 weight has two dimensions, not \(weight.shape)") }
        let (rows, columns) = (weight.shape[0], weight.shape[1])
        // A sum of `columns` products of at most 127 · 63 each must fit an int32 (and its scaling).
        guard columns <= Self.maximumInFeatures else {
            throw TensorError("an int8 weight takes at most \(Self.maximumInFeatures) input features, not \(columns): its int32 sums would overflow")
        }
        // Filled in locals, stored only on success: a throw after every property is set would run deinit.
        let packed = UnsafeMutablePointer<Int8>.allocate(capacity: max(1, rk_i8_packed_bytes(rows, columns)))
        let scales = UnsafeMutablePointer<Float>.allocate(capacity: max(1, rows))
        let sums = UnsafeMutablePointer<Int32>.allocate(capacity: max(1, rows))
        let bad = rk_i8_pack_weight(weight.pointer, rows, columns, packed, scales, sums)
        guard bad == 0 else {
            packed.deallocate()
            scales.deallocate()
            sums.deallocate()
            let (row, column) = (bad - 1).quotientAndRemainder(dividingBy: max(1, columns))
            throw TensorError("the weight holds \(weight.pointer[bad - 1]) at [\(row), \(column)]; int8 products need finite values")
        }
        outFeatures = rows
        inFeatures = columns
        self.packed = packed
        self.scales = scales
        self.sums = sums
    }

    deinit {
        packed.deallocate()
        scales.deallocate()
        sums.deallocate()
    }

    /// `y[r, c − outputs.lowerBound] (+)= Σ_i x[r, i] · w[c, i]` for the output features `outputs`,
    /// rows of `x` at stride `inFeatures`, rows of `y` at stride `ldy`; then `bias[c]` (one value per
    /// output feature of the weight) added, and with `gelu` the exact-erf GELU applied, as
    /// `EncoderKernels.addBias` / `biasGELU` would in a pass of their own (the same floats).
    public func product(_ x: UnsafePointer<Float>, rows: Int, outputs: Range<Int>? = nil,
                        into y: UnsafeMutablePointer<Float>, ldy: Int? = nil, accumulate: Bool = false,
                        bias: UnsafePointer<Float>? = nil, gelu: Bool = false) {
        let outputs = outputs ?? 0..<outFeatures
        precondition(outputs.lowerBound >= 0 && outputs.upperBound <= outFeatures, "Int8Matrix: outputs \(outputs) outside 0..<\(outFeatures)")
        guard rows > 0, !outputs.isEmpty else { return }
        _ = Parallel.threadCount  // starts the pool the kernels run on
        let depth = rk_i8_depth(inFeatures), padded = rk_i8_padded_rows(rows)
        let quantized = UnsafeMutablePointer<UInt8>.allocate(capacity: padded * depth)
        let rowScales = UnsafeMutablePointer<Float>.allocate(capacity: rows)
        let rowZeros = UnsafeMutablePointer<Int32>.allocate(capacity: rows)
        defer {
            quantized.deallocate()
            rowScales.deallocate()
            rowZeros.deallocate()
        }
        rk_i8_quantize_rows(x, inFeatures, rows, inFeatures, quantized, depth, rowScales, rowZeros)
        rk_i8_product(quantized, depth, rows, rowScales, rowZeros, packed, scales, sums, inFeatures,
                      outputs.lowerBound, outputs.upperBound, y, ldy ?? outputs.count, accumulate ? 1 : 0, bias, gelu ? 1 : 0)
    }
}
