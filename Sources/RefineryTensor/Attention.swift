
/// Scaled dot-product attention with a causal mask and grouped-query heads.
public enum Attention {
    /// Query rows handled per block: keys after a block's last query are never computed.
    static let blockRows = 128

    /// Floats of scratch `causal` needs.
    public static func scratchCount(queryCount: Int, keyCount: Int, heads: Int) -> Int {
        Swift.min(queryCount, blockRows) * keyCount
    }

    /// Computes attention for `queryCount` new positions against `keyCount` keys (the new
    /// positions are the last `queryCount` of them).
    ///
    /// - `q`: `[queryCount, heads × headDim]`; `k`, `v`: `[keyCount, kvHeads × headDim]` (row strides given).
    /// - `out`: `[queryCount, heads × headDim]`.
    /// - `keyStart`: for packed rows, the first key each query may see (block-diagonal masks);
    ///   `nil` means 0 for all. Must be non-decreasing.
    /// - `scratch`: at least `scratchCount(...)` floats.
    ///
    /// Heads run one after another with BLAS's own threads; the softmax rows of a block run in
    /// parallel. The BLAS thread count is never changed here, so results do not depend on what
    /// other threads of the process are doing.
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
        let qs = SendablePointer(UnsafeMutablePointer(mutating: q))
        let ks = SendablePointer(UnsafeMutablePointer(mutating: k))
        let vs = SendablePointer(UnsafeMutablePointer(mutating: v))
        let os = SendablePointer(out)
        let scores = SendablePointer(scratch)
        let starts = keyStart
        for head in 0..<heads {
            let kvHead = head / groups
            let headScratch = scores
            var r0 = 0
            while r0 < queryCount {
                let r1 = Swift.min(queryCount, r0 + block)
                let keyLow = starts?[r0] ?? 0
                let keyHigh = past + r1
                let width = keyHigh - keyLow
                BLAS.gemm(
                    transA: false, transB: true, m: r1 - r0, n: width, k: headDim, alpha: scale,
                    a: qs.pointer + r0 * qStride + head * headDim, lda: qStride,
                    b: ks.pointer + keyLow * kvStride + kvHead * headDim, ldb: kvStride,
                    c: headScratch.pointer, ldc: width)
                let blockStart = r0
                Parallel.forEach(r1 - r0, costPerItem: width * 3) { rowRange in
                    for row in (blockStart + rowRange.lowerBound)..<(blockStart + rowRange.upperBound) {
                        let r = headScratch.pointer + (row - blockStart) * width
                        let first = (starts?[row] ?? 0) - keyLow
                        let last = past + row - keyLow
                        if first > 0 { r.update(repeating: 0, count: first) }
                        Kernels.softmax(r + first, count: last - first + 1)
                        if last + 1 < width { (r + last + 1).update(repeating: 0, count: width - last - 1) }
                    }
                }
                BLAS.gemm(
                    transA: false, transB: false, m: r1 - r0, n: headDim, k: width,
                    a: headScratch.pointer, lda: width, b: vs.pointer + keyLow * kvStride + kvHead * headDim, ldb: kvStride,
                    c: os.pointer + r0 * outStride + head * headDim, ldc: outStride)
                r0 = r1
            }
        }
    }
}
