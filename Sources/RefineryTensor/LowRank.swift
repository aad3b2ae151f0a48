import CRefineryKernels

/// The thin matrix products of LoRA (one side only `rank` wide), on Refinery's own threads.
///
/// OpenBLAS is slow on these shapes: packing and waking its threads cost more than the
/// arithmetic (measured on the SmolLM2-135M shape: the 42 LoRA products of a layer took 16 ms with
/// two OpenBLAS threads; these loops take a fraction of it). Work is split on fixed blocks of rows
/// or columns, and every element is computed by the same sequence of operations whichever thread
/// computes it, so the result has the same bits for any thread count. All matrices are row-major
/// with explicit leading dimensions.
public enum LowRank {
    /// Rows per block in `multiply`: a multiple of the kernel's row tiles.
    static let rowBlock = 16
    /// Columns per block in `gram`: a multiple of the kernel's column tile.
    static let columnBlock = 64

    /// The width LoRA's thin matrices are stored at: the rank rounded up to the kernels' 16 lanes
    /// (padding columns hold zeros, so they add nothing).
    public static func paddedRank(_ rank: Int) -> Int { (rank + 15) / 16 * 16 }

    /// `y[rows, cols] = alpha · u[rows, inner] · m[inner, cols]`, or `y +=` that when `accumulate`,
    /// where `inner` or `cols` is a LoRA rank: `x·Aᵀ` and `dy·B` (thin `m`), `u·Bᵀ` and `v·A` (thin `u`).
    public static func multiply(
        _ u: UnsafePointer<Float>, ldu: Int, _ m: UnsafePointer<Float>, ldm: Int,
        into y: UnsafeMutablePointer<Float>, ldy: Int, rows: Int, cols: Int, inner: Int,
        alpha: Float = 1, accumulate: Bool
    ) {
        let us = SendablePointer(UnsafeMutablePointer(mutating: u)), ms = SendablePointer(UnsafeMutablePointer(mutating: m))
        let ys = SendablePointer(y)
        let blocks = (rows + rowBlock - 1) / rowBlock
        Parallel.forEach(blocks, costPerItem: rowBlock * cols * max(inner, 1)) { range in
            let start = range.lowerBound * rowBlock, end = min(rows, range.upperBound * rowBlock)
            rk_lowrank_expand(us.pointer + start * ldu, ldu, ms.pointer, ldm, ys.pointer + start * ldy, ldy,
                              end - start, cols, inner, alpha, accumulate ? 1 : 0)
        }
    }

    /// `c[rank, cols] += alpha · p[depth, rank]ᵀ · q[depth, cols]` (the LoRA weight gradients).
    public static func gram(
        _ p: UnsafePointer<Float>, ldp: Int, _ q: UnsafePointer<Float>, ldq: Int,
        into c: UnsafeMutablePointer<Float>, ldc: Int, depth: Int, rank: Int, cols: Int, alpha: Float = 1
    ) {
        let ps = SendablePointer(UnsafeMutablePointer(mutating: p)), qs = SendablePointer(UnsafeMutablePointer(mutating: q))
        let cs = SendablePointer(c)
        let blocks = (cols + columnBlock - 1) / columnBlock
        Parallel.forEach(blocks, costPerItem: columnBlock * rank * depth) { range in
            let start = range.lowerBound * columnBlock, end = min(cols, range.upperBound * columnBlock)
            rk_lowrank_gram(ps.pointer, ldp, qs.pointer + start, ldq, cs.pointer + start, ldc,
                            depth, rank, end - start, alpha)
        }
    }

    /// `destination[col · ldd + row] = source[row · lds + col]` for a `rows × cols` block (`lds`
    /// defaults to dense rows); destination columns `rows..<ldd` are left as they are.
    public static func transpose(_ source: UnsafePointer<Float>, lds: Int? = nil, rows: Int, cols: Int,
                                 into destination: UnsafeMutablePointer<Float>, ldd: Int) {
        let stride = lds ?? cols
        for row in 0..<rows {
            let s = source + row * stride
            for col in 0..<cols { destination[col * ldd + row] = s[col] }
        }
    }

    /// `destination[rows, ldd] = source[rows, cols]`; columns `cols..<ldd` of the destination are left as they are.
    public static func copy(_ source: UnsafePointer<Float>, rows: Int, cols: Int,
                            into destination: UnsafeMutablePointer<Float>, ldd: Int) {
        for row in 0..<rows {
            (destination + row * ldd).update(from: source + row * cols, count: cols)
        }
    }
}
