/// Scaled dot-product attention with a causal mask and grouped-query heads.
///
/// The query heads that share a key/value head are stacked into one matrix, so each block of
/// queries needs one product with the keys and one with the values per KV head. Keys after a
/// block's last query are never computed. BLAS runs with its own threads and the thread count is
/// never changed here, so results do not depend on what other threads of the process do.
public enum Attention {
    /// Query rows handled per block.
    static let blockRows = 128

    /// Floats of scratch `causal` needs.
    public static func scratchCount(queryCount: Int, keyCount: Int, heads: Int, headDim: Int) -> Int {
        let rows = heads * Swift.min(queryCount, blockRows)
        return rows * keyCount + 2 * rows * headDim
    }

    /// Computes attention for `queryCount` new positions against `keyCount` keys (the new
    /// positions are the last `queryCount` of them).
    ///
    /// - `q`: `[queryCount, heads × headDim]`; `k`, `v`: `[keyCount, kvHeads × headDim]` (row strides given).
    /// - `out`: `[queryCount, heads × headDim]`.
    /// - `keyStart`: for packed rows, the first key each query may see (block-diagonal masks);
    ///   `nil` means 0 for all. Must be non-decreasing.
    /// - `scratch`: at least `scratchCount(...)` floats.
    public static func causal(
        q: UnsafePointer<Float>, qStride: Int,
        k: UnsafePointer<Float>, v: UnsafePointer<Float>, kvStride: Int,
        out: UnsafeMutablePointer<Float>, outStride: Int,
        queryCount: Int, keyCount: Int, heads: Int, kvHeads: Int, headDim: Int,
        keyStart: [Int]? = nil, scratch: UnsafeMutablePointer<Float>
    ) {
        let groups = heads / kvHeads
        let scale = 1 / Float(headDim).squareRoot()
        let past = keyCount - queryCount
        let block = Swift.min(queryCount, blockRows)
        let maxRows = groups * block
        let scores = SendablePointer(scratch)
        let stackedQ = scratch + maxRows * keyCount
        let stackedOut = stackedQ + maxRows * headDim
        for kvHead in 0..<kvHeads {
            var r0 = 0
            while r0 < queryCount {
                let r1 = Swift.min(queryCount, r0 + block)
                let b = r1 - r0
                let rows = groups * b
                let keyLow = keyStart?[r0] ?? 0
                let width = past + r1 - keyLow
                // Stack the group's query heads: row g·b + i is head (kvHead·groups + g), query r0 + i.
                for g in 0..<groups {
                    let head = kvHead * groups + g
                    for i in 0..<b {
                        (stackedQ + (g * b + i) * headDim).update(from: q + (r0 + i) * qStride + head * headDim, count: headDim)
                    }
                }
                BLAS.gemm(transA: false, transB: true, m: rows, n: width, k: headDim, alpha: scale,
                          a: stackedQ, lda: headDim, b: k + keyLow * kvStride + kvHead * headDim, ldb: kvStride,
                          c: scores.pointer, ldc: width)
                let starts = keyStart, blockStart = r0
                Parallel.forEach(rows, costPerItem: width * 3) { range in
                    for stackedRow in range {
                        let row = blockStart + stackedRow % b
                        let r = scores.pointer + stackedRow * width
                        let first = (starts?[row] ?? 0) - keyLow
                        let last = past + row - keyLow
                        if first > 0 { r.update(repeating: 0, count: first) }
                        Kernels.softmax(r + first, count: last - first + 1)
                        if last + 1 < width { (r + last + 1).update(repeating: 0, count: width - last - 1) }
                    }
                }
                BLAS.gemm(transA: false, transB: false, m: rows, n: headDim, k: width,
                          a: scores.pointer, lda: width, b: v + keyLow * kvStride + kvHead * headDim, ldb: kvStride,
                          c: stackedOut, ldc: headDim)
                for g in 0..<groups {
                    let head = kvHead * groups + g
                    for i in 0..<b {
                        (out + (r0 + i) * outStride + head * headDim).update(from: stackedOut + (g * b + i) * headDim, count: headDim)
                    }
                }
                r0 = r1
            }
        }
    }
}
