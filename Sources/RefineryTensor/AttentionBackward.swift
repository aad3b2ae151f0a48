extension Attention {
    /// Floats of scratch `backward` needs.
    public static func backwardScratchCount(queryCount: Int, heads: Int, headDim: Int) -> Int {
        let block = Swift.min(queryCount, blockRows)
        return heads * (2 * block * queryCount + 2 * queryCount * headDim)
    }

    /// Backward of `causal` without a cache (training): recomputes the probabilities from `q`/`k`
    /// and writes `dQ`, `dK`, `dV` (all overwritten).
    public static func backward(
        q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>, dOut: UnsafePointer<Float>,
        dQ: UnsafeMutablePointer<Float>, dK: UnsafeMutablePointer<Float>, dV: UnsafeMutablePointer<Float>,
        count t: Int, heads: Int, kvHeads: Int, headDim: Int, keyStart: [Int]?, scratch: UnsafeMutablePointer<Float>
    ) {
        let qStride = heads * headDim, kvStride = kvHeads * headDim
        let groups = heads / kvHeads
        let scale = 1 / Float(headDim).squareRoot()
        let block = Swift.min(t, blockRows)
        let perHead = 2 * block * t + 2 * t * headDim
        let qs = SendablePointer(UnsafeMutablePointer(mutating: q)), ks = SendablePointer(UnsafeMutablePointer(mutating: k))
        let vs = SendablePointer(UnsafeMutablePointer(mutating: v)), dos = SendablePointer(UnsafeMutablePointer(mutating: dOut))
        let dqs = SendablePointer(dQ), sc = SendablePointer(scratch)
        let starts = keyStart
        // Heads run one after another with BLAS's own threads (the thread count is never changed:
        // results must not depend on other threads of the process); rows of a block in parallel.
        for head in 0..<heads {
            do {
                let kvHead = head / groups
                let base = sc.pointer + head * perHead
                let probabilities = base, dP = base + block * t
                let dKHead = base + 2 * block * t, dVHead = dKHead + t * headDim
                dKHead.update(repeating: 0, count: 2 * t * headDim)
                var r0 = 0
                while r0 < t {
                    let r1 = Swift.min(t, r0 + block)
                    let rows = r1 - r0
                    let keyLow = starts?[r0] ?? 0
                    let width = r1 - keyLow
                    let qBlock = qs.pointer + r0 * qStride + head * headDim
                    let dOBlock = dos.pointer + r0 * qStride + head * headDim
                    let kBase = ks.pointer + keyLow * kvStride + kvHead * headDim
                    let vBase = vs.pointer + keyLow * kvStride + kvHead * headDim
                    BLAS.gemm(transA: false, transB: true, m: rows, n: width, k: headDim, alpha: scale,
                              a: qBlock, lda: qStride, b: kBase, ldb: kvStride, c: probabilities, ldc: width)
                    BLAS.gemm(transA: false, transB: true, m: rows, n: width, k: headDim,
                              a: dOBlock, lda: qStride, b: vBase, ldb: kvStride, c: dP, ldc: width)
                    let blockStart = r0
                    let ps = SendablePointer(probabilities), dps = SendablePointer(dP)
                    Parallel.forEach(rows, costPerItem: width * 6) { rowRange in
                        for row in (blockStart + rowRange.lowerBound)..<(blockStart + rowRange.upperBound) {
                            let p = ps.pointer + (row - blockStart) * width, d = dps.pointer + (row - blockStart) * width
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
                    // dQ = scale · dS · K
                    BLAS.gemm(transA: false, transB: false, m: rows, n: headDim, k: width, alpha: scale,
                              a: dP, lda: width, b: kBase, ldb: kvStride,
                              c: dqs.pointer + r0 * qStride + head * headDim, ldc: qStride)
                    // dK_h += scale · dSᵀ · Q ; dV_h += Pᵀ · dO
                    BLAS.gemm(transA: true, transB: false, m: width, n: headDim, k: rows, alpha: scale,
                              a: dP, lda: width, b: qBlock, ldb: qStride,
                              beta: 1, c: dKHead + keyLow * headDim, ldc: headDim)
                    BLAS.gemm(transA: true, transB: false, m: width, n: headDim, k: rows,
                              a: probabilities, lda: width, b: dOBlock, ldb: qStride,
                              beta: 1, c: dVHead + keyLow * headDim, ldc: headDim)
                    r0 = r1
                }
            }
        }
        // Sum the per-head key/value gradients into their shared KV heads.
        dK.update(repeating: 0, count: t * kvStride)
        dV.update(repeating: 0, count: t * kvStride)
        for head in 0..<heads {
            let kvHead = head / groups
            let dKHead = scratch + head * perHead + 2 * block * t, dVHead = dKHead + t * headDim
            for row in 0..<t {
                let kRow = dK + row * kvStride + kvHead * headDim, vRow = dV + row * kvStride + kvHead * headDim
                let kh = dKHead + row * headDim, vh = dVHead + row * headDim
                for c in 0..<headDim { kRow[c] += kh[c]; vRow[c] += vh[c] }
            }
        }
    }
}
