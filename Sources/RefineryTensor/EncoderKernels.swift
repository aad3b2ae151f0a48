import CRefineryKernels

/// Kernels of BERT-family encoders: LayerNorm, exact GELU, bias and bidirectional attention over
/// packed sequences. Row-major Float32, into caller buffers, spread over Refinery's threads.
public enum EncoderKernels {
    /// LayerNorm as `torch.nn.LayerNorm` for each of `rows` rows of `dim` values.
    /// With `bfloat16`, each row is also rounded into it while it is in cache (the next product's operand).
    public static func layerNorm(
        _ x: UnsafePointer<Float>, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>,
        rows: Int, dim: Int, eps: Float, into y: UnsafeMutablePointer<Float>, bfloat16: UnsafeMutablePointer<UInt16>? = nil
    ) {
        let xs = SendablePointer(UnsafeMutablePointer(mutating: x)), ys = SendablePointer(y)
        let ws = SendablePointer(UnsafeMutablePointer(mutating: weight)), bs = SendablePointer(UnsafeMutablePointer(mutating: bias))
        let hs = bfloat16.map { SendablePointer($0) }
        Parallel.forEach(rows, costPerItem: dim * 4) { range in
            for row in range {
                rk_layer_norm(xs.pointer + row * dim, ws.pointer, bs.pointer, ys.pointer + row * dim, dim, eps)
                if let hs { rk_f32_to_bf16(ys.pointer + row * dim, hs.pointer + row * dim, dim) }
            }
        }
    }

    /// `y = x + bias` row-wise (the residual a product then accumulates into).
    public static func sumBias(_ x: UnsafePointer<Float>, bias: UnsafePointer<Float>, rows: Int, cols: Int, into y: UnsafeMutablePointer<Float>) {
        let xs = SendablePointer(UnsafeMutablePointer(mutating: x)), ys = SendablePointer(y)
        let bs = SendablePointer(UnsafeMutablePointer(mutating: bias))
        Parallel.forEach(rows, costPerItem: cols) { range in
            for row in range { rk_sum_bias(xs.pointer + row * cols, bs.pointer, ys.pointer + row * cols, cols) }
        }
    }

    /// `x = gelu(x + bias)` row-wise (exact erf form, transformers' `"gelu"`), in place.
    /// With `bfloat16`, each row is also rounded into it while it is in cache.
    public static func biasGELU(_ x: UnsafeMutablePointer<Float>, bias: UnsafePointer<Float>, rows: Int, cols: Int,
                                bfloat16: UnsafeMutablePointer<UInt16>? = nil) {
        let xs = SendablePointer(x), bs = SendablePointer(UnsafeMutablePointer(mutating: bias))
        let hs = bfloat16.map { SendablePointer($0) }
        Parallel.forEach(rows, costPerItem: cols * 8) { range in
            for row in range {
                rk_bias_gelu(xs.pointer + row * cols, bs.pointer, cols)
                if let hs { rk_f32_to_bf16(xs.pointer + row * cols, hs.pointer + row * cols, cols) }
            }
        }
    }

    /// Adds `bias` to each of `rows` rows of `cols` values, in place.
    public static func addBias(_ x: UnsafeMutablePointer<Float>, bias: UnsafePointer<Float>, rows: Int, cols: Int) {
        let xs = SendablePointer(x), bs = SendablePointer(UnsafeMutablePointer(mutating: bias))
        Parallel.forEach(rows, costPerItem: cols) { range in
            for row in range { rk_add_bias(xs.pointer + row * cols, bs.pointer, cols) }
        }
    }
    /// Bidirectional scaled dot-product attention within each sequence of a packed batch: sequence
    /// `s` covers rows `starts[s]..<starts[s+1]` and sees all of its own rows and nothing else (so
    /// no padding and no mask). `qkv` holds per row the queries, keys and values of all heads
    /// side by side (`[rows, 3 × heads × headDim]`); `out` is `[rows, heads × headDim]`. With
    /// `bias` (`3 × heads × headDim` values), it is first added to every row of `qkv`.
    public static func bidirectionalAttention(
        qkv: UnsafeMutablePointer<Float>, bias: UnsafePointer<Float>? = nil, starts: [Int], heads: Int, headDim: Int,
        into out: UnsafeMutablePointer<Float>
    ) {
        let sequences = starts.count - 1
        guard sequences > 0 else { return }
        let hidden = heads * headDim, stride = 3 * hidden
        if let bias { addBias(qkv, bias: bias, rows: starts[sequences], cols: stride) }
        let scale = 1 / Float(headDim).squareRoot()
        let qs = SendablePointer(qkv), os = SendablePointer(out)
        var work = 0
        for s in 0..<sequences { let n = starts[s + 1] - starts[s]; work += 4 * n * n * hidden }
        Parallel.run(sequences * heads, totalCost: work) { task in
            let s = task / heads, head = task % heads
            let first = starts[s], n = starts[s + 1] - first
            if n == 0 { return }
            // Score rows padded to a multiple of 16 keys (zero keys, never read by the softmax)
            // so every product runs on whole vectors.
            let width = (n + 15) & ~15
            let scratch = UnsafeMutablePointer<Float>.allocate(capacity: n * width + headDim * width)
            defer { scratch.deallocate() }
            let scores = scratch, keysT = scratch + n * width
            let q = qs.pointer + first * stride + head * headDim
            if width > n { for d in 0..<headDim { (keysT + d * width + n).initialize(repeating: 0, count: width - n) } }
            LowRank.transpose(q + hidden, lds: stride, rows: n, cols: headDim, into: keysT, ldd: width)
            rk_lowrank_expand(q, stride, keysT, width, scores, width, n, width, headDim, scale, 0)
            for row in 0..<n { rk_softmax(scores + row * width, n) }
            rk_lowrank_expand(scores, width, q + 2 * hidden, stride, os.pointer + first * hidden + head * headDim, hidden,
                              n, headDim, n, 1, 0)
        }
    }
}
