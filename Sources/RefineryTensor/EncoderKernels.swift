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

    /// `x = (x + residual) + bias`, then `y = LayerNorm(x)` row-wise (with `bfloat16`, `y` also
    /// rounded into it): the residual sum of a sublayer whose output projection wrote `x`.
    public static func residualLayerNorm(
        _ x: UnsafeMutablePointer<Float>, residual: UnsafePointer<Float>, bias: UnsafePointer<Float>, weight: UnsafePointer<Float>,
        normBias: UnsafePointer<Float>, rows: Int, dim: Int, eps: Float, into y: UnsafeMutablePointer<Float>,
        bfloat16: UnsafeMutablePointer<UInt16>? = nil
    ) {
        let xs = SendablePointer(x), rs = SendablePointer(UnsafeMutablePointer(mutating: residual)), ys = SendablePointer(y)
        let cs = SendablePointer(UnsafeMutablePointer(mutating: bias)), ws = SendablePointer(UnsafeMutablePointer(mutating: weight))
        let bs = SendablePointer(UnsafeMutablePointer(mutating: normBias)), hs = bfloat16.map { SendablePointer($0) }
        Parallel.forEach(rows, costPerItem: dim * 6) { range in
            for row in range {
                rk_residual_layer_norm(xs.pointer + row * dim, rs.pointer + row * dim, cs.pointer, ws.pointer, bs.pointer,
                                       ys.pointer + row * dim, dim, eps)
                if let hs { rk_f32_to_bf16(ys.pointer + row * dim, hs.pointer + row * dim, dim) }
            }
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
    /// `bias` (`3 × heads × headDim` values), it is first added to every row of `qkv`. In
    /// bfloat16, `roundedScratch` (at least `(rows + 16) × 3 × heads × headDim` values; allocated
    /// per call when nil) receives the rounded `qkv`; with `roundedAlready` it already holds the
    /// biased, rounded rows (a fused product made them; only with oneDNN's bfloat16 kernels) and `qkv` is
    /// scratch, filled from them where a sequence runs in float32 (shorter than
    /// `Attention.bfloat16MinimumRows`).
    public static func bidirectionalAttention(
        qkv: UnsafeMutablePointer<Float>, bias: UnsafePointer<Float>? = nil, starts: [Int], heads: Int, headDim: Int,
        into out: UnsafeMutablePointer<Float>, products: ComputeDType = .float32, roundedScratch: UnsafeMutablePointer<UInt16>? = nil,
        roundedAlready: Bool = false
    ) {
        let sequences = starts.count - 1
        guard sequences > 0 else { return }
        let hidden = heads * headDim, stride = 3 * hidden, rows = starts[sequences]
        let scale = 1 / Float(headDim).squareRoot()
        // In bfloat16 the biased queries, keys and values are rounded once, whole rows at a time, and
        // every head reads its columns in place; 16 zero rows follow the last sequence, so a product
        // over a sequence padded to a multiple of 16 rows reads the next sequence's rows or zeros.
        let onBFloat16 = products == .bfloat16 && ProductBackend.current.hasBFloat16Kernels
        let owned = onBFloat16 && roundedScratch == nil ? UnsafeMutablePointer<UInt16>.allocate(capacity: (rows + 16) * stride) : nil
        defer { owned?.deallocate() }
        let rounded = onBFloat16 ? roundedScratch ?? owned : nil
        precondition(!roundedAlready || (rounded != nil && roundedScratch != nil), "rounded rows come only with oneDNN's bfloat16 kernels")
        if let rounded {
            (rounded + rows * stride).initialize(repeating: 0, count: 16 * stride)
            if !roundedAlready { roundRows(qkv, bias: bias, rows: rows, cols: stride, into: rounded) }
        } else if let bias {
            addBias(qkv, bias: bias, rows: rows, cols: stride)
        }
        let qs = SendablePointer(qkv), os = SendablePointer(out), hs = rounded.map { SendablePointer($0) }
        var work = 0
        for s in 0..<sequences { let n = starts[s + 1] - starts[s]; work += 4 * n * n * hidden }
        Parallel.run(sequences * heads, totalCost: work) { task in
            let s = task / heads, head = task % heads
            let first = starts[s], n = starts[s + 1] - first
            if n == 0 { return }
            // Rows padded to a multiple of 16 for oneDNN's bfloat16 primitives.
            let width = (n + 15) & ~15
            let target = os.pointer + first * hidden + head * headDim
            if let hs, n >= Attention.bfloat16MinimumRows,
               Self.bfloat16Attention(qkv: hs.pointer + first * stride + head * headDim, stride: stride, n: n, width: width,
                                      headDim: headDim, scale: scale, into: target, ldo: hidden) {
                return
            }
            let q = qs.pointer + first * stride + head * headDim
            if roundedAlready, let hs {
                // This head's queries, keys and values of the sequence, widened from the rounded rows.
                for row in 0..<n {
                    for part in 0..<3 {
                        let offset = row * stride + part * hidden
                        rk_bf16_to_f32(hs.pointer + first * stride + head * headDim + offset, q + offset, headDim)
                    }
                }
            }
            // Scores, softmax and P V a block of query rows at a time, in this thread's scratch.
            // (The call is not inside the precondition: release builds are -Ounchecked, which skips it.)
            let done = rk_f32_attention(q, stride, hidden, n, headDim, scale, target, hidden)
            precondition(done == 1, "out of memory for attention's scratch (\(n) rows)")
        }
    }

    /// Attention of each sequence's first row only (what a classifier's pooler reads from the last
    /// layer): `queries` (`[sequences, hidden]`) against the keys and values of every row of its
    /// sequence in `qkv` (`[rows, 3 × hidden]`, the queries' columns unused). `bias` (`3 × hidden`)
    /// is first added to the queries and to the keys and values of every row. In bfloat16 the
    /// queries, keys, values and probabilities are rounded as the packed attention rounds them.
    /// `out` is `[sequences, hidden]`; an empty sequence's row is zero.
    public static func firstRowAttention(
        queries: UnsafeMutablePointer<Float>, qkv: UnsafeMutablePointer<Float>, bias: UnsafePointer<Float>, starts: [Int],
        heads: Int, headDim: Int, into out: UnsafeMutablePointer<Float>, products: ComputeDType
    ) {
        let sequences = starts.count - 1
        guard sequences > 0 else { return }
        let hidden = heads * headDim, stride = 3 * hidden, rows = starts[sequences]
        let rounding = products == .bfloat16
        let qs = SendablePointer(queries), kv = SendablePointer(qkv), os = SendablePointer(out)
        let bs = SendablePointer(UnsafeMutablePointer(mutating: bias))
        Parallel.forEach(sequences, costPerItem: hidden * 2) { range in
            let halves = UnsafeMutablePointer<UInt16>.allocate(capacity: hidden)
            defer { halves.deallocate() }
            for s in range {
                rk_add_bias(qs.pointer + s * hidden, bs.pointer, hidden)
                if rounding { roundInPlace(qs.pointer + s * hidden, count: hidden, scratch: halves) }
            }
        }
        Parallel.forEach(rows, costPerItem: stride) { range in
            let halves = UnsafeMutablePointer<UInt16>.allocate(capacity: 2 * hidden)
            defer { halves.deallocate() }
            for row in range {
                rk_add_bias(kv.pointer + row * stride + hidden, bs.pointer + hidden, 2 * hidden)
                if rounding { roundInPlace(kv.pointer + row * stride + hidden, count: 2 * hidden, scratch: halves) }
            }
        }
        let scale = 1 / Float(headDim).squareRoot()
        var work = 0
        for s in 0..<sequences { work += 4 * (starts[s + 1] - starts[s]) * hidden }
        Parallel.run(sequences * heads, totalCost: work) { task in
            let s = task / heads, head = task % heads
            let first = starts[s], n = starts[s + 1] - first
            let target = os.pointer + s * hidden + head * headDim
            guard n > 0 else {
                target.initialize(repeating: 0, count: headDim)
                return
            }
            let scores = UnsafeMutablePointer<Float>.allocate(capacity: n)
            defer { scores.deallocate() }
            let keys = kv.pointer + first * stride + hidden + head * headDim
            rk_single_query_attention(qs.pointer + s * hidden + head * headDim, keys, keys + hidden, stride, n, headDim, scale,
                                      rounding ? 1 : 0, scores, target)
        }
    }

    /// Replaces `count` values by their bfloat16 roundings (as floats), through `scratch` (`count` halves).
    private static func roundInPlace(_ values: UnsafeMutablePointer<Float>, count: Int, scratch: UnsafeMutablePointer<UInt16>) {
        rk_f32_to_bf16(values, scratch, count)
        rk_bf16_to_f32(scratch, values, count)
    }

    /// `x + bias` (when given) written back to `x` and, rounded to bfloat16, to `target`, row by row
    /// while each row is in cache.
    private static func roundRows(_ x: UnsafeMutablePointer<Float>, bias: UnsafePointer<Float>?, rows: Int, cols: Int,
                                  into target: UnsafeMutablePointer<UInt16>) {
        let xs = SendablePointer(x), ts = SendablePointer(target)
        let bs = bias.map { SendablePointer(UnsafeMutablePointer(mutating: $0)) }
        Parallel.forEach(rows, costPerItem: cols * 2) { range in
            for row in range {
                if let bs {
                    rk_add_bias_to_bf16(xs.pointer + row * cols, bs.pointer, ts.pointer + row * cols, cols)
                } else {
                    rk_f32_to_bf16(xs.pointer + row * cols, ts.pointer + row * cols, cols)
                }
            }
        }
    }

    /// One (sequence, head) of attention on bfloat16 operands with float32 sums and a float32
    /// softmax, as PyTorch's autocast runs it. `qkv` points at the head's queries in the rounded
    /// rows (keys `hidden` and values `2 · hidden` further, rows `stride` apart). With AVX512-BF16
    /// and a head of 16–64 (`useKernel`), both products run in one call of Refinery's own kernel
    /// (`rk_bf16_attention`); otherwise on oneDNN over `width` rows (a multiple of 16, so sequences
    /// of similar lengths share one primitive): rows past `n` belong to the next sequence or are
    /// zero, their scores are never read and their probabilities are zero. False when neither
    /// could run (nothing was written).
    static func bfloat16Attention(qkv: UnsafePointer<UInt16>, stride: Int, n: Int, width: Int, headDim: Int, scale: Float,
                                  into out: UnsafeMutablePointer<Float>, ldo: Int, useKernel: Bool = true) -> Bool {
        let hidden = stride / 3
        if useKernel && rk_bf16_attention(qkv, stride, hidden, n, headDim, scale, out, ldo) == 1 { return true }
        let probabilities = UnsafeMutablePointer<UInt16>.allocate(capacity: width * width)
        defer { probabilities.deallocate() }
        let floats = UnsafeMutablePointer<Float>.allocate(capacity: width * width + width * headDim)
        defer { floats.deallocate() }
        let scores = floats, context = floats + width * width
        // scores[width, width] = scale · Q Kᵀ (K's rows read in place as the transpose).
        guard rk_dnnl_gemm(Int32(RK_DNNL_BF16), 0, 1, width, width, headDim, scale, qkv, stride, qkv + hidden, stride, 0, scores, width) == 1 else {
            return false
        }
        rk_softmax_rows_bf16(scores, width, n, n, width, probabilities)
        if width > n { (probabilities + n * width).initialize(repeating: 0, count: (width - n) * width) }
        guard Attention.bfloat16Product(transA: false, probabilities, lda: width, qkv + 2 * hidden, ldb: stride, into: context, ldc: headDim,
                                        m: width, n: headDim, k: width, alpha: 1) else { return false }
        for row in 0..<n { (out + row * ldo).update(from: context + row * headDim, count: headDim) }
        return true
    }
}
