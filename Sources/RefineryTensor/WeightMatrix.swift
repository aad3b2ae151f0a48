import CRefineryKernels

/// A weight matrix `[rows, cols]` (Hugging Face layout: `[out, in]` for a linear layer) in the form
/// the products read it.
///
/// - float32 runs: `float` only.
/// - bfloat16 runs of frozen weights: `bfloat16` only (half the memory).
/// - bfloat16 runs of trained weights (full fine-tuning): `float` is the master copy the optimizer
///   updates and `bfloat16` the copy the products read, refreshed by `refreshBFloat16()` after
///   every change of `float`.
/// - QLoRA's frozen base projections: `nf4` only (~4.1 bits per value); products dequantize it
///   tile by tile (`NF4Product`) in `nf4Products` precision.
public final class WeightMatrix: @unchecked Sendable {
    /// `[rows, cols]`.
    public let shape: [Int]
    /// Float32 values, when kept.
    public let float: Tensor?
    /// bfloat16 values, when the products run in bfloat16.
    public let bfloat16: BFloat16Storage?
    /// 4-bit NormalFloat values (a frozen QLoRA base weight).
    public let nf4: NF4Matrix?
    /// The precision of the products of an `nf4` weight (its tiles are dequantized to it).
    public let nf4Products: ComputeDType

    /// A float32 weight (float32 products).
    public init(_ float: Tensor) {
        shape = float.shape
        self.float = float
        bfloat16 = nil
        nf4 = nil
        nf4Products = .float32
    }

    /// A weight whose products run in `dtype`; in bfloat16 the float32 values are kept only when
    /// `keepFloat` (a trained weight's master copy).
    public init(_ values: Tensor, dtype: ComputeDType, keepFloat: Bool) {
        shape = values.shape
        nf4 = nil
        nf4Products = .float32
        switch dtype {
        case .float32:
            float = values
            bfloat16 = nil
        case .bfloat16:
            float = keepFloat ? values : nil
            bfloat16 = BFloat16Storage(rounding: values.pointer, count: values.count)
        }
    }

    /// A frozen bfloat16 weight from its bits.
    public init(bfloat16: BFloat16Storage, shape: [Int]) {
        precondition(bfloat16.count == shape.reduce(1, *), "WeightMatrix: \(bfloat16.count) values for shape \(shape)")
        self.shape = shape
        float = nil
        self.bfloat16 = bfloat16
        nf4 = nil
        nf4Products = .float32
    }

    /// A frozen 4-bit weight whose products run in `products` precision.
    public init(nf4: NF4Matrix, products: ComputeDType) {
        shape = nf4.shape
        float = nil
        bfloat16 = nil
        self.nf4 = nf4
        nf4Products = products
    }

    /// The precision the products read this weight in.
    public var dtype: ComputeDType { nf4 != nil ? nf4Products : bfloat16 == nil ? .float32 : .bfloat16 }
    /// Number of elements.
    public var count: Int { shape.reduce(1, *) }

    /// The float32 values: the kept copy itself (shared), or a new tensor widened from bfloat16
    /// or dequantized from NF4.
    public func floatValues() -> Tensor {
        if let float { return float }
        if let nf4 { return nf4.floatValues() }
        let result = Tensor(uninitialized: shape)
        if let bfloat16 { BFloat16Storage.widen(bfloat16.pointer, into: result.pointer, count: count) }
        return result
    }

    /// Rounds the float32 master copy into the bfloat16 copy (after the optimizer changed it).
    public func refreshBFloat16() {
        guard let float, let bfloat16 else { return }
        BFloat16Storage.round(float.pointer, into: bfloat16.pointer, count: count)
    }

    /// Changes the values through their float32 form: in place when float32 is kept (then the
    /// bfloat16 copy is refreshed), else widened, changed and rounded back.
    public func update(_ body: (Tensor) -> Void) {
        precondition(nf4 == nil, "WeightMatrix.update: a 4-bit weight is frozen")
        if let float {
            body(float)
            refreshBFloat16()
        } else if let bfloat16 {
            let widened = floatValues()
            body(widened)
            BFloat16Storage.round(widened.pointer, into: bfloat16.pointer, count: count)
        }
    }

    /// Copies row `row` (`cols` values) as float32 into `target` (an embedding lookup).
    public func copyRow(_ row: Int, into target: UnsafeMutablePointer<Float>) {
        let cols = shape[1]
        if let float {
            target.update(from: float.pointer + row * cols, count: cols)
        } else if let bfloat16 {
            rk_bf16_to_f32(bfloat16.pointer + row * cols, target, cols)
        } else if let nf4 {
            nf4.dequantize((row * cols)..<((row + 1) * cols), into: target)
        }
    }
}
