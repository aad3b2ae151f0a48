import CRefineryKernels

extension Attention {
    /// Backward of `causal` without a cache (training): writes `dQ`, `dK`, `dV` (all overwritten)
    /// from the `probabilities` that `causal` kept. Same tasks as `causal`; each task writes its
    /// own rows of `dQ` and its own partial `dK`/`dV`, which are then added in task order, so the
    /// bits do not depend on the thread count. `products: .bfloat16` runs the four products on
    /// bfloat16 operands (float32 sums) on oneDNN, as `causal` does; the softmax backward stays float32.
    public static func backward(
        q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>, dOut: UnsafePointer<Float>,
        dQ: UnsafeMutablePointer<Float>, dK: UnsafeMutablePointer<Float>, dV: UnsafeMutablePointer<Float>,
        count t: Int, heads: Int, kvHeads: Int, headDim: Int, keyStart: [Int]?,
        probabilities: UnsafePointer<Float>, products: ComputeDType = .float32
    ) {
        if t == 0 { return }
        let qStride = heads * headDim, kvStride = kvHeads * headDim
        let groups = heads / kvHeads
        let scale = 1 / Float(headDim).squareRoot()
        // Vᵀ of every KV head, [headDim, t] each: the layout dO·Vᵀ reads.
        let valuesT = UnsafeMutablePointer<Float>.allocate(capacity: kvHeads * headDim * t)
        defer { valuesT.deallocate() }
        for kvHead in 0..<kvHeads {
            LowRank.transpose(v + kvHead * headDim, lds: kvStride, rows: t, cols: headDim, into: valuesT + kvHead * headDim * t, ldd: t)
        }
        // bfloat16 copies of Vᵀ and K, rounded once for all tasks.
        let halves = products == .bfloat16 && t >= bfloat16MinimumRows && ProductBackend.current.hasBFloat16Kernels
            ? (valuesT: BFloat16Storage(rounding: valuesT, count: kvHeads * headDim * t),
               keys: BFloat16Storage(rounding: k, count: (t - 1) * kvStride + kvHeads * headDim))
            : nil
        let tasks = tasks(queryCount: t, kvHeads: kvHeads)
        let layout = probabilityLayout(tasks, queryCount: t, keyCount: t, heads: heads, kvHeads: kvHeads, keyStart: keyStart)
        let kept = SendablePointer(UnsafeMutablePointer(mutating: probabilities))
        // Partial dK and dV of each task: [width, headDim] each, width = r1 − keyLow.
        var total = 0
        let offsets = tasks.map { task in
            defer { total += 2 * (task.rowEnd - (keyStart?[task.rowStart] ?? 0)) * headDim }
            return total
        }
        let partials = UnsafeMutablePointer<Float>.allocate(capacity: Swift.max(total, 1))
        defer { partials.deallocate() }
        let qs = SendablePointer(UnsafeMutablePointer(mutating: q)), ks = SendablePointer(UnsafeMutablePointer(mutating: k))
        let dOuts = SendablePointer(UnsafeMutablePointer(mutating: dOut))
        let vTs = SendablePointer(valuesT)
        let dQs = SendablePointer(dQ), ps = SendablePointer(partials)
        run(tasks.count, work: heads * t * t * headDim * 4) { index in
            let task = tasks[index]
            let r0 = task.rowStart, r1 = task.rowEnd, b = r1 - r0, rows = groups * b
            let keyLow = keyStart?[r0] ?? 0
            let width = r1 - keyLow
            let scratch = UnsafeMutablePointer<Float>.allocate(capacity: rows * (width + 3 * headDim))
            defer { scratch.deallocate() }
            let dP = scratch, p = kept.pointer + layout.offsets[index]
            let stackedQ = dP + rows * width, stackedDOut = stackedQ + rows * headDim, stackedDQ = stackedDOut + rows * headDim
            stack(qs.pointer, stride: qStride, stacked: stackedQ, kvHead: task.kvHead, groups: groups, r0: r0, r1: r1,
                  headDim: headDim, gather: true)
            stack(dOuts.pointer, stride: qStride, stacked: stackedDOut, kvHead: task.kvHead, groups: groups, r0: r0, r1: r1,
                  headDim: headDim, gather: true)
            // bfloat16 operands of this task: dO, Q, P and dS, [rows, ·] each.
            let half = halves.map { _ in UnsafeMutablePointer<UInt16>.allocate(capacity: rows * (2 * headDim + 2 * width)) }
            defer { half?.deallocate() }
            let dOut16 = half, q16 = half.map { $0 + rows * headDim }
            let p16 = half.map { $0 + 2 * rows * headDim }, dS16 = p16.map { $0 + rows * width }
            if let dOut16, let q16, let p16 {
                roundRows(stackedDOut, ld: headDim, rows: rows, cols: headDim, into: dOut16)
                roundRows(stackedQ, ld: headDim, rows: rows, cols: headDim, into: q16)
                roundRows(p, ld: width, rows: rows, cols: width, into: p16)
            }
            let valueColumns = task.kvHead * headDim * t + keyLow
            if let halves, let dOut16,
               bfloat16Product(transA: false, dOut16, lda: headDim, halves.valuesT.pointer + valueColumns, ldb: t,
                               into: dP, ldc: width, m: rows, n: width, k: headDim, alpha: 1) {
            } else {
                rk_lowrank_expand(stackedDOut, headDim, vTs.pointer + valueColumns, t, dP, width, rows, width, headDim, 1, 0)
            }
            // dS = P ⊙ (dP − Σ P·dP), written over dP.
            for stackedRow in 0..<rows {
                let row = r0 + stackedRow % b
                let pr = p + stackedRow * width, d = dP + stackedRow * width
                let first = (keyStart?[row] ?? 0) - keyLow
                let last = row - keyLow
                let dot = rk_dot(pr + first, d + first, last - first + 1)
                for j in 0..<width { d[j] = pr[j] * (d[j] - dot) }
            }
            if let dS16 { roundRows(dP, ld: width, rows: rows, cols: width, into: dS16) }
            // dQ = scale · dS · K ; dK = scale · dSᵀ · Q ; dV = Pᵀ · dO
            let kvBase = keyLow * kvStride + task.kvHead * headDim
            if let halves, let dS16,
               bfloat16Product(transA: false, dS16, lda: width, halves.keys.pointer + kvBase, ldb: kvStride,
                               into: stackedDQ, ldc: headDim, m: rows, n: headDim, k: width, alpha: scale) {
            } else {
                rk_lowrank_expand(dP, width, ks.pointer + kvBase, kvStride, stackedDQ, headDim, rows, headDim, width, scale, 0)
            }
            stack(dQs.pointer, stride: qStride, stacked: stackedDQ, kvHead: task.kvHead, groups: groups, r0: r0, r1: r1,
                  headDim: headDim, gather: false)
            let partialK = ps.pointer + offsets[index], partialV = partialK + width * headDim
            if let dS16, let q16,
               bfloat16Product(transA: true, dS16, lda: width, q16, ldb: headDim, into: partialK, ldc: headDim,
                               m: width, n: headDim, k: rows, alpha: scale) {
            } else {
                partialK.initialize(repeating: 0, count: width * headDim)
                rk_lowrank_gram(dP, width, stackedQ, headDim, partialK, headDim, rows, width, headDim, scale)
            }
            if let p16, let dOut16,
               bfloat16Product(transA: true, p16, lda: width, dOut16, ldb: headDim, into: partialV, ldc: headDim,
                               m: width, n: headDim, k: rows, alpha: 1) {
            } else {
                partialV.initialize(repeating: 0, count: width * headDim)
                rk_lowrank_gram(p, width, stackedDOut, headDim, partialV, headDim, rows, width, headDim, 1)
            }
        }
        // dK, dV: for each key row, the partials of the tasks that saw it, added in order of query
        // block (ascending) per KV head; rows are independent, so they are split over threads.
        var byHead = [[Int]](repeating: [], count: kvHeads)
        for index in tasks.indices.reversed() { byHead[tasks[index].kvHead].append(index) }
        let ordered = byHead
        let dKs = SendablePointer(dK), dVs = SendablePointer(dV)
        Parallel.forEach(t, costPerItem: kvStride * 2 * Swift.max(1, tasks.count / kvHeads)) { range in
            for key in range {
                let rowK = dKs.pointer + key * kvStride, rowV = dVs.pointer + key * kvStride
                rowK.update(repeating: 0, count: kvStride)
                rowV.update(repeating: 0, count: kvStride)
                for kvHead in 0..<kvHeads {
                    for index in ordered[kvHead] {
                        let task = tasks[index]
                        let keyLow = keyStart?[task.rowStart] ?? 0
                        guard key >= keyLow, key < task.rowEnd else { continue }
                        let width = task.rowEnd - keyLow
                        let partialK = ps.pointer + offsets[index] + (key - keyLow) * headDim
                        let partialV = partialK + width * headDim
                        Kernels.add(rowK + kvHead * headDim, partialK, count: headDim)
                        Kernels.add(rowV + kvHead * headDim, partialV, count: headDim)
                    }
                }
            }
        }
    }
}
