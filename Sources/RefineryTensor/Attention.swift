/// Scaled dot-product attention with a causal mask and grouped-query heads.
public enum Attention {
    /// Computes attention for `queryCount` new positions against `keyCount` cached keys
    /// (the new positions are the last `queryCount` of them).
    ///
    /// - `q`: `[queryCount, heads × headDim]`; `k`, `v`: `[keyCount, kvHeads × headDim]` (row strides given).
    /// - `out`: `[queryCount, heads × headDim]`.
    /// - `keyStart`: for packed rows, the first key each query may see (block-diagonal masks);
    ///   `nil` means 0 for all.
    /// - `scratch`: at least `queryCount × keyCount` floats.
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
        let scores = SendablePointer(scratch)
        for head in 0..<heads {
            let kvHead = head / groups
            BLAS.gemm(
                transA: false, transB: true, m: queryCount, n: keyCount, k: headDim, alpha: scale,
                a: q + head * headDim, lda: qStride, b: k + kvHead * headDim, ldb: kvStride,
                c: scratch, ldc: keyCount)
            Parallel.forEach(queryCount, costPerItem: keyCount * 4) { range in
                for row in range {
                    let r = scores.pointer + row * keyCount
                    let last = past + row
                    let first = keyStart?[row] ?? 0
                    if first > 0 { for j in 0..<first { r[j] = 0 } }
                    Kernels.softmax(r + first, count: last - first + 1)
                    if last + 1 < keyCount { for j in (last + 1)..<keyCount { r[j] = 0 } }
                }
            }
            BLAS.gemm(
                transA: false, transB: false, m: queryCount, n: headDim, k: keyCount,
                a: scratch, lda: keyCount, b: v + kvHead * headDim, ldb: kvStride,
                c: out + head * headDim, ldc: outStride)
        }
    }
}
