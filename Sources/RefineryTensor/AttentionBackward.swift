extension Attention {
    /// Floats of scratch `backward` needs.
    public static func backwardScratchCount(queryCount: Int, heads: Int, headDim: Int) -> Int {
        let rows = heads * Swift.min(queryCount, blockRows)
        return 2 * rows * queryCount + 3 * rows * headDim
    }

    /// Backward of `causal` without a cache (training): recomputes the probabilities from `q`/`k`
    /// and writes `dQ`, `dK`, `dV` (all overwritten). Same stacking of query heads as `causal`.
    public static func backward(
        q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>, dOut: UnsafePointer<Float>,
        dQ: UnsafeMutablePointer<Float>, dK: UnsafeMutablePointer<Float>, dV: UnsafeMutablePointer<Float>,
        count t: Int, heads: Int, kvHeads: Int, headDim: Int, keyStart: [Int]?, scratch: UnsafeMutablePointer<Float>
    ) {
        let qStride = heads * headDim, kvStride = kvHeads * headDim
        let groups = heads / kvHeads
        let scale = 1 / Float(headDim).squareRoot()
        let block = Swift.min(t, blockRows)
        let maxRows = groups * block
        let probabilities = SendablePointer(scratch)
        let dP = SendablePointer(scratch + maxRows * t)
        let stackedQ = scratch + 2 * maxRows * t
        let stackedDOut = stackedQ + maxRows * headDim
        let stackedDQ = stackedDOut + maxRows * headDim
        dK.update(repeating: 0, count: t * kvStride)
        dV.update(repeating: 0, count: t * kvStride)
        for kvHead in 0..<kvHeads {
            var r0 = 0
            while r0 < t {
                let r1 = Swift.min(t, r0 + block)
                let b = r1 - r0
                let rows = groups * b
                let keyLow = keyStart?[r0] ?? 0
                let width = r1 - keyLow
                for g in 0..<groups {
                    let head = kvHead * groups + g
                    for i in 0..<b {
                        (stackedQ + (g * b + i) * headDim).update(from: q + (r0 + i) * qStride + head * headDim, count: headDim)
                        (stackedDOut + (g * b + i) * headDim).update(from: dOut + (r0 + i) * qStride + head * headDim, count: headDim)
                    }
                }
                let kBase = k + keyLow * kvStride + kvHead * headDim
                let vBase = v + keyLow * kvStride + kvHead * headDim
                BLAS.gemm(transA: false, transB: true, m: rows, n: width, k: headDim, alpha: scale,
                          a: stackedQ, lda: headDim, b: kBase, ldb: kvStride, c: probabilities.pointer, ldc: width)
                BLAS.gemm(transA: false, transB: true, m: rows, n: width, k: headDim,
                          a: stackedDOut, lda: headDim, b: vBase, ldb: kvStride, c: dP.pointer, ldc: width)
                let starts = keyStart, blockStart = r0
                Parallel.forEach(rows, costPerItem: width * 6) { range in
                    for stackedRow in range {
                        let row = blockStart + stackedRow % b
                        let p = probabilities.pointer + stackedRow * width, d = dP.pointer + stackedRow * width
                        let first = (starts?[row] ?? 0) - keyLow
                        let last = row - keyLow
                        if first > 0 { p.update(repeating: 0, count: first) }
                        Kernels.softmax(p + first, count: last - first + 1)
                        if last + 1 < width { (p + last + 1).update(repeating: 0, count: width - last - 1) }
                        var dot: Float = 0
                        for j in first...last { dot += p[j] * d[j] }
                        for j in 0..<width { d[j] = p[j] * (d[j] - dot) }
                    }
                }
                // dQ = scale · dS · K ; dK += scale · dSᵀ · Q ; dV += Pᵀ · dO
                BLAS.gemm(transA: false, transB: false, m: rows, n: headDim, k: width, alpha: scale,
                          a: dP.pointer, lda: width, b: kBase, ldb: kvStride, c: stackedDQ, ldc: headDim)
                BLAS.gemm(transA: true, transB: false, m: width, n: headDim, k: rows, alpha: scale,
                          a: dP.pointer, lda: width, b: stackedQ, ldb: headDim,
                          beta: 1, c: dK + keyLow * kvStride + kvHead * headDim, ldc: kvStride)
                BLAS.gemm(transA: true, transB: false, m: width, n: headDim, k: rows,
                          a: probabilities.pointer, lda: width, b: stackedDOut, ldb: headDim,
                          beta: 1, c: dV + keyLow * kvStride + kvHead * headDim, ldc: kvStride)
                for g in 0..<groups {
                    let head = kvHead * groups + g
                    for i in 0..<b {
                        (dQ + (r0 + i) * qStride + head * headDim).update(from: stackedDQ + (g * b + i) * headDim, count: headDim)
                    }
                }
                r0 = r1
            }
        }
    }
}
