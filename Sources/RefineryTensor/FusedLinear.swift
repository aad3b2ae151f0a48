import CRefineryKernels
import Synchronization

extension BLAS {
    /// A linear layer with its bias (and, with `gelu`, the exact-erf GELU), bfloat16 in and out:
    /// `y[rows, out] = bfloat16(x · Wᵀ + bias)` or `bfloat16(GELU(x · Wᵀ + bias))` (`x` rows
    /// `inFeatures` apart, `y` rows `outFeatures` apart), the product's float32 sums never stored —
    /// oneDNN applies the bias, the GELU and the rounding as the product's epilogue. Cut over the
    /// pool like `gemmBF16`. Returns false, with `y` unspecified, when the backend has no bfloat16 kernels or
    /// refuses the product: the caller then computes it unfused.
    public static func linearBiasBF16(_ x: UnsafePointer<UInt16>, rows: Int, weight w: UnsafePointer<UInt16>, outFeatures: Int,
                                      inFeatures: Int, bias: UnsafePointer<Float>, gelu: Bool,
                                      into y: UnsafeMutablePointer<UInt16>) -> Bool {
        let gelu: Int32 = gelu ? 1 : 0
        guard ProductBackend.current.hasBFloat16Kernels else { return false }
        if rows == 0 || outFeatures == 0 { return true }
        let cut = Cut(m: rows, n: outFeatures, k: inFeatures, parts: threadCount)
        guard cut.parallel else {
            return rk_dnnl_linear_bias_bf16(rows, outFeatures, inFeatures, x, inFeatures, w, inFeatures, bias, gelu, y, outFeatures) == 1
        }
        let (xs, ws, bs, ys) = (UInt(bitPattern: x), UInt(bitPattern: w), UInt(bitPattern: bias), UInt(bitPattern: y))
        let refused = Atomic<Int>(0)
        Parallel.run(cut.blocks) { index in
            let start = index * cut.blockSize, size = min(cut.blockSize, cut.extent - start)
            let x = UnsafePointer<UInt16>(bitPattern: xs).unsafelyUnwrapped, w = UnsafePointer<UInt16>(bitPattern: ws).unsafelyUnwrapped
            let bias = UnsafePointer<Float>(bitPattern: bs).unsafelyUnwrapped, y = UnsafeMutablePointer<UInt16>(bitPattern: ys).unsafelyUnwrapped
            let done = cut.byColumns
                ? rk_dnnl_linear_bias_bf16(rows, size, inFeatures, x, inFeatures, w + start * inFeatures, inFeatures, bias + start,
                                           gelu, y + start, outFeatures)
                : rk_dnnl_linear_bias_bf16(size, outFeatures, inFeatures, x + start * inFeatures, inFeatures, w, inFeatures, bias,
                                           gelu, y + start * outFeatures, outFeatures)
            if done != 1 { refused.add(1, ordering: .relaxed) }
        }
        return refused.load(ordering: .relaxed) == 0
    }
}
