import CRefineryKernels

/// Scaled dot-product attention with a causal mask and grouped-query heads.
///
/// Work is cut into tasks, one per KV head and block of `blockRows` queries; the query heads that
/// share a KV head are stacked into one matrix, so a task is two thin products (with the keys and
/// with the values) and a softmax. Keys after a block's last query are never computed. Tasks run
/// on Refinery's threads, each single-threaded through the kernels of `LowRank`, so the result
/// has the same bits for any thread count (the cut into tasks depends only on the shapes).
public enum Attention {
    /// Query rows per task.
    static let blockRows = 64

    /// One task: a KV head and a block of query rows.
    struct Task {
        let kvHead: Int
        let rowStart: Int
        let rowEnd: Int
    }

    /// Tasks for `queryCount` queries, widest (most keys) first, so that interleaving them over
    /// threads balances the work.
    static func tasks(queryCount: Int, kvHeads: Int) -> [Task] {
        var result: [Task] = []
        var start = 0
        while start < queryCount {
            let end = Swift.min(queryCount, start + blockRows)
            for kvHead in 0..<kvHeads { result.append(Task(kvHead: kvHead, rowStart: start, rowEnd: end)) }
            start = end
        }
        return result.reversed()
    }

    /// Where each task's probabilities start in a buffer that keeps them (`causal` with
    /// `probabilities`, read back by `backward`), and the buffer's total size in floats. A task's
    /// block is `[groups · rows, width]`, width = keys from the block's first allowed key to its last query.
    static func probabilityLayout(_ tasks: [Task], queryCount: Int, keyCount: Int, heads: Int, kvHeads: Int,
                                  keyStart: [Int]?) -> (offsets: [Int], total: Int) {
        let groups = heads / kvHeads, past = keyCount - queryCount
        var total = 0
        let offsets = tasks.map { task in
            defer { total += groups * (task.rowEnd - task.rowStart) * (past + task.rowEnd - (keyStart?[task.rowStart] ?? 0)) }
            return total
        }
        return (offsets, total)
    }

    /// Floats a buffer for `causal`'s `probabilities` needs.
    public static func probabilityCount(queryCount: Int, keyCount: Int, heads: Int, kvHeads: Int, keyStart: [Int]?) -> Int {
        probabilityLayout(tasks(queryCount: queryCount, kvHeads: kvHeads), queryCount: queryCount, keyCount: keyCount,
                          heads: heads, kvHeads: kvHeads, keyStart: keyStart).total
    }

    /// Runs `body(task index)` once for every task. The pool hands tasks out one at a time, so a
    /// thread the system slows down holds up no more than one task.
    static func run(_ count: Int, work: Int, _ body: @Sendable (Int) -> Void) {
        Parallel.run(count, totalCost: work, body)
    }

    /// Copies the query heads of `kvHead`'s group, rows `r0..<r1`, into `[groups·(r1−r0), headDim]`
    /// (row `g·b + i` is head `kvHead·groups + g`, query `r0 + i`), or back when `gather` is false.
    static func stack(_ matrix: UnsafeMutablePointer<Float>, stride: Int, stacked: UnsafeMutablePointer<Float>,
                      kvHead: Int, groups: Int, r0: Int, r1: Int, headDim: Int, gather: Bool) {
        let b = r1 - r0
        for g in 0..<groups {
            let head = kvHead * groups + g
            for i in 0..<b {
                let row = matrix + (r0 + i) * stride + head * headDim
                let s = stacked + (g * b + i) * headDim
                if gather { s.update(from: row, count: headDim) } else { row.update(from: s, count: headDim) }
            }
        }
    }

    /// Computes attention for `queryCount` new positions against `keyCount` keys (the new
    /// positions are the last `queryCount` of them).
    ///
    /// - `q`: `[queryCount, heads × headDim]`; `k`, `v`: `[keyCount, kvHeads × headDim]` (row strides given).
    /// - `out`: `[queryCount, heads × headDim]`.
    /// - `keyStart`: for packed rows, the first key each query may see (block-diagonal masks);
    ///   `nil` means 0 for all. Must be non-decreasing.
    /// - `probabilities`: when given (`probabilityCount(...)` floats), the softmax probabilities are
    ///   kept there for `backward`, which then need not recompute them.
    /// - `products`: `.bfloat16` runs the two products on bfloat16 operands (queries, keys, the
    ///   probabilities and values rounded; float32 accumulation), as PyTorch's autocast runs
    ///   attention — on oneDNN and for blocks of at least `bfloat16MinimumRows` queries; the
    ///   softmax stays float32, and the kept probabilities are the float32 ones.
    public static func causal(
        q: UnsafePointer<Float>, qStride: Int,
        k: UnsafePointer<Float>, v: UnsafePointer<Float>, kvStride: Int,
        out: UnsafeMutablePointer<Float>, outStride: Int,
        queryCount: Int, keyCount: Int, heads: Int, kvHeads: Int, headDim: Int,
        keyStart: [Int]? = nil, probabilities: UnsafeMutablePointer<Float>? = nil,
        products: ComputeDType = .float32
    ) {
        if queryCount == 0 { return }
        let groups = heads / kvHeads
        let scale = 1 / Float(headDim).squareRoot()
        let past = keyCount - queryCount
        // Kᵀ of every KV head, [headDim, keyCount] each: the layout the score product reads.
        let keysT = UnsafeMutablePointer<Float>.allocate(capacity: kvHeads * headDim * keyCount)
        defer { keysT.deallocate() }
        for kvHead in 0..<kvHeads {
            LowRank.transpose(k + kvHead * headDim, lds: kvStride, rows: keyCount, cols: headDim,
                              into: keysT + kvHead * headDim * keyCount, ldd: keyCount)
        }
        let tasks = tasks(queryCount: queryCount, kvHeads: kvHeads)
        let layout = probabilities.map { _ in
            probabilityLayout(tasks, queryCount: queryCount, keyCount: keyCount, heads: heads, kvHeads: kvHeads, keyStart: keyStart)
        }
        // bfloat16 copies of Kᵀ and V, rounded once for all tasks.
        let halves = products == .bfloat16 && queryCount >= bfloat16MinimumRows && ProductBackend.current.hasBFloat16Kernels
            ? (keys: BFloat16Storage(rounding: keysT, count: kvHeads * headDim * keyCount),
               values: BFloat16Storage(rounding: v, count: (keyCount - 1) * kvStride + kvHeads * headDim))
            : nil
        let kept = probabilities.map { SendablePointer($0) }
        let qs = SendablePointer(UnsafeMutablePointer(mutating: q)), vs = SendablePointer(UnsafeMutablePointer(mutating: v))
        let ks = SendablePointer(keysT), os = SendablePointer(out)
        run(tasks.count, work: heads * queryCount * keyCount * headDim * 2) { index in
            let task = tasks[index]
            let r0 = task.rowStart, r1 = task.rowEnd, b = r1 - r0, rows = groups * b
            let keyLow = keyStart?[r0] ?? 0
            let width = past + r1 - keyLow
            let scratch = UnsafeMutablePointer<Float>.allocate(capacity: rows * (width + 2 * headDim))
            defer { scratch.deallocate() }
            let stackedQ = scratch + rows * width, stackedOut = stackedQ + rows * headDim
            let scores = if let kept, let layout { kept.pointer + layout.offsets[index] } else { scratch }
            stack(qs.pointer, stride: qStride, stacked: stackedQ, kvHead: task.kvHead, groups: groups, r0: r0, r1: r1,
                  headDim: headDim, gather: true)
            let keyColumns = task.kvHead * headDim * keyCount + keyLow
            let halfScratch = halves.map { _ in UnsafeMutablePointer<UInt16>.allocate(capacity: rows * Swift.max(width, headDim)) }
            defer { halfScratch?.deallocate() }
            if let halves, let halfScratch,
               bfloat16Product(stackedQ, lda: headDim, halfScratch, halves.keys.pointer + keyColumns, ldb: keyCount,
                               into: scores, ldc: width, m: rows, n: width, k: headDim, alpha: scale) {
            } else {
                rk_lowrank_expand(stackedQ, headDim, ks.pointer + keyColumns, keyCount, scores, width, rows, width, headDim, scale, 0)
            }
            for stackedRow in 0..<rows {
                let row = r0 + stackedRow % b
                let r = scores + stackedRow * width
                let first = (keyStart?[row] ?? 0) - keyLow
                let last = past + row - keyLow
                if first > 0 { r.update(repeating: 0, count: first) }
                rk_softmax(r + first, last - first + 1)
                if last + 1 < width { (r + last + 1).update(repeating: 0, count: width - last - 1) }
            }
            let valueRows = keyLow * kvStride + task.kvHead * headDim
            if let halves, let halfScratch,
               bfloat16Product(scores, lda: width, halfScratch, halves.values.pointer + valueRows, ldb: kvStride,
                               into: stackedOut, ldc: headDim, m: rows, n: headDim, k: width, alpha: 1) {
            } else {
                rk_lowrank_expand(scores, width, vs.pointer + valueRows, kvStride, stackedOut, headDim, rows, headDim, width, 1, 0)
            }
            stack(os.pointer, stride: outStride, stacked: stackedOut, kvHead: task.kvHead, groups: groups, r0: r0, r1: r1,
                  headDim: headDim, gather: false)
        }
    }

    /// Query blocks shorter than this keep float32 products in bfloat16 mode: decoding's one-row
    /// blocks have a new width at every step (a new oneDNN primitive each time) and read few keys.
    static let bfloat16MinimumRows = 16

    /// `c[m, n] = alpha · bf16(a)[m, k] · b[k, n]` through oneDNN on this thread: `a` (float32, `lda`)
    /// is rounded into `scratch` (`m × k` elements) first. False when oneDNN refused (then the
    /// caller computes the product in float32; nothing was written).
    private static func bfloat16Product(_ a: UnsafePointer<Float>, lda: Int, _ scratch: UnsafeMutablePointer<UInt16>,
                                        _ b: UnsafePointer<UInt16>, ldb: Int, into c: UnsafeMutablePointer<Float>, ldc: Int,
                                        m: Int, n: Int, k: Int, alpha: Float) -> Bool {
        roundRows(a, ld: lda, rows: m, cols: k, into: scratch)
        return bfloat16Product(transA: false, scratch, lda: k, b, ldb: ldb, into: c, ldc: ldc, m: m, n: n, k: k, alpha: alpha)
    }

    /// `c[m, n] = alpha · op(a) · b` on bfloat16 operands through oneDNN on this thread; `op(a)` is
    /// `a` (`[m, k]`) or, with `transA`, `aᵀ` (`a` stored `[k, m]`). False when oneDNN refused.
    static func bfloat16Product(transA: Bool, _ a: UnsafePointer<UInt16>, lda: Int, _ b: UnsafePointer<UInt16>, ldb: Int,
                                into c: UnsafeMutablePointer<Float>, ldc: Int, m: Int, n: Int, k: Int, alpha: Float) -> Bool {
        rk_dnnl_gemm(Int32(RK_DNNL_BF16), transA ? 1 : 0, 0, m, n, k, alpha, a, lda, b, ldb, 0, c, ldc) == 1
    }

    /// Rounds `rows × cols` floats (row stride `ld`) into a packed bfloat16 `[rows, cols]`.
    static func roundRows(_ source: UnsafePointer<Float>, ld: Int, rows: Int, cols: Int, into target: UnsafeMutablePointer<UInt16>) {
        for row in 0..<rows { rk_f32_to_bf16(source + row * ld, target + row * cols, cols) }
    }
}
