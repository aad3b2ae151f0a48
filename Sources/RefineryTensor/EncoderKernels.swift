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
        into out: UnsafeMutablePointer<Float>, products: ComputeDType = .float32
    ) {
        let sequences = starts.count - 1
        guard sequences > 0 else { return }
        let hidden = heads * headDim, stride = 3 * hidden
        if let bias { addBias(qkv, bias: bias, rows: starts[sequences], cols: stride) }
        let scale = 1 / Float(headDim).squareRoot()
        let qs = SendablePointer(qkv), os = SendablePointer(out)
        let halves = products == .bfloat16 && ProductBackend.current == .onednn
        var work = 0
        for s in 0..<sequences { let n = starts[s + 1] - starts[s]; work += 4 * n * n * hidden }
        Parallel.run(sequences * heads, totalCost: work) { task in
            let s = task / heads, head = task % heads
            let first = starts[s], n = starts[s + 1] - first
            if n == 0 { return }
            // Score rows padded to a multiple of 16 keys (zero keys, never read by the softmax)
            // so every product runs on whole vectors.
            let width = (n + 15) & ~15
            let q = qs.pointer + first * stride + head * headDim
            if halves && n >= Attention.bfloat16MinimumRows && Self.bfloat16Attention(q: q, stride: stride, n: n, width: width, headDim: headDim,
                                                                                       scale: scale, into: os.pointer + first * hidden + head * headDim,
                                                                                       ldo: hidden) {
                return
            }
            let scratch = UnsafeMutablePointer<Float>.allocate(capacity: n * width + headDim * width)
            defer { scratch.deallocate() }
            let scores = scratch, keysT = scratch + n * width
            if width > n { for d in 0..<headDim { (keysT + d * width + n).initialize(repeating: 0, count: width - n) } }
            LowRank.transpose(q + hidden, lds: stride, rows: n, cols: headDim, into: keysT, ldd: width)
            rk_lowrank_expand(q, stride, keysT, width, scores, width, n, width, headDim, scale, 0)
            for row in 0..<n { rk_softmax(scores + row * width, n) }
            rk_lowrank_expand(scores, width, q + 2 * hidden, stride, os.pointer + first * hidden + head * headDim, hidden,
                              n, headDim, n, 1, 0)
        }
    }

    /// One (sequence, head) of attention on bfloat16 operands with float32 sums and a float32
    /// softmax, as PyTorch's autocast runs it: queries, keys, values and probabilities rounded, the
    /// two products on oneDNN. Queries and keys are padded with zero rows to `width` (a multiple of
    /// 16), so sequences of similar lengths share one oneDNN primitive. False when oneDNN refused
    /// (nothing was written).
    static func bfloat16Attention(q: UnsafePointer<Float>, stride: Int, n: Int, width: Int, headDim: Int, scale: Float,
                                  into out: UnsafeMutablePointer<Float>, ldo: Int) -> Bool {
        let hidden = stride / 3
        let halves = UnsafeMutablePointer<UInt16>.allocate(capacity: 3 * width * headDim + width * width)
        defer { halves.deallocate() }
        let floats = UnsafeMutablePointer<Float>.allocate(capacity: width * width + width * headDim)
        defer { floats.deallocate() }
        let queries = halves, keys = halves + width * headDim, values = keys + width * headDim, probabilities = values + width * headDim
        let scores = floats, context = floats + width * width
        // Rows n..<width of queries, keys and values are zero.
        (halves + n * headDim).initialize(repeating: 0, count: (width - n) * headDim)
        (keys + n * headDim).initialize(repeating: 0, count: (width - n) * headDim)
        (values + n * headDim).initialize(repeating: 0, count: (width - n) * headDim)
        Attention.roundRows(q, ld: stride, rows: n, cols: headDim, into: queries)
        Attention.roundRows(q + hidden, ld: stride, rows: n, cols: headDim, into: keys)
        Attention.roundRows(q + 2 * hidden, ld: stride, rows: n, cols: headDim, into: values)
        // scores[width, width] = scale · Q Kᵀ (K stored [width, headDim]: its transpose read in place).
        guard rk_dnnl_gemm(Int32(RK_DNNL_BF16), 0, 1, width, width, headDim, scale, queries, headDim, keys, headDim, 0, scores, width) == 1 else {
            return false
        }
        for row in 0..<n {
            let r = scores + row * width
            rk_softmax(r, n)
            if width > n { (r + n).update(repeating: 0, count: width - n) }
        }
        if width > n { (scores + n * width).update(repeating: 0, count: (width - n) * width) }
        Attention.roundRows(scores, ld: width, rows: width, cols: width, into: probabilities)
        guard Attention.bfloat16Product(transA: false, probabilities, lda: width, values, ldb: headDim, into: context, ldc: headDim,
                                        m: width, n: headDim, k: width, alpha: 1) else { return false }
        for row in 0..<n { (out + row * ldo).update(from: context + row * headDim, count: headDim) }
        return true
    }
}
