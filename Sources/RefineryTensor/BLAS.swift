import COpenBLAS
import Synchronization

/// Matrix products through OpenBLAS `cblas_sgemm`, row-major.
///
/// OpenBLAS runs single-threaded; a big product is cut into `threadCount` column, row or (when it
/// is much deeper than wide) depth blocks that run on `Parallel`'s pool. Measured on the training
/// step's shapes (2 cores): as fast as or faster than OpenBLAS's own threading, without a second
/// thread pool spinning against the first.
public enum BLAS {
    private static let parts = Atomic<Int>(0)
    private static let singleThreaded: Void = { openblas_set_num_threads(1) }()

    /// Sets the number of blocks a big product is cut into (call once, before heavy work). The cut
    /// changes the bits of the result, so processes that must agree bit for bit use the same count.
    public static func setThreads(_ count: Int) {
        parts.store(max(1, count), ordering: .relaxed)
    }

    /// The number of blocks a big product is cut into: `setThreads`'s value, else `Parallel.threadCount`.
    public static var threadCount: Int {
        let value = parts.load(ordering: .relaxed)
        return value > 0 ? value : Parallel.threadCount
    }

    /// `C[m,n] = alpha · op(A) · op(B) + beta · C`, row-major, with explicit leading dimensions.
    ///
    /// `op(A)` is `[m,k]`: A is stored `[m,k]` (`transA == false`, `lda ≥ k`) or `[k,m]` (`lda ≥ m`).
    /// `op(B)` is `[k,n]`: B is stored `[k,n]` (`transB == false`, `ldb ≥ n`) or `[n,k]` (`ldb ≥ k`).
    public static func gemm(
        transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
        alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
        b: UnsafePointer<Float>, ldb: Int,
        beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        gemm(parts: threadCount, transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda,
             b: b, ldb: ldb, beta: beta, c: c, ldc: ldc)
    }

    /// `gemm` cut into at most `count` blocks (tests pick the cut without touching the global setting).
    static func gemm(
        parts count: Int, transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
        alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
        b: UnsafePointer<Float>, ldb: Int,
        beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        if m == 0 || n == 0 { return }
        _ = singleThreaded
        if count > 1 && k >= 4 * max(m, n) && m * n * k >= 1 << 21 {
            gemmSplittingDepth(parts: count, transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda,
                               b: b, ldb: ldb, beta: beta, c: c, ldc: ldc)
            return
        }
        // Cut the dimension whose other operand is cheaper to pack twice: columns repeat A's
        // packing in every block, rows repeat B's.
        let byColumns = m <= n
        let extent = byColumns ? n : m
        let width = (extent + count - 1) / count
        let block = (width + 15) / 16 * 16
        let blocks = (extent + block - 1) / block
        if count <= 1 || blocks <= 1 || m * n * k < 1 << 21 {
            call(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
            return
        }
        let (aAddress, bAddress, cAddress) = (UInt(bitPattern: a), UInt(bitPattern: b), UInt(bitPattern: c))
        Parallel.run(blocks) { index in
            let start = index * block, size = min(block, extent - start)
            let a = UnsafePointer<Float>(bitPattern: aAddress).unsafelyUnwrapped
            let b = UnsafePointer<Float>(bitPattern: bAddress).unsafelyUnwrapped
            let c = UnsafeMutablePointer<Float>(bitPattern: cAddress).unsafelyUnwrapped
            if byColumns {
                call(transA, transB, m, size, k, alpha, a, lda, transB ? b + start * ldb : b + start, ldb,
                     beta, c + start, ldc)
            } else {
                call(transA, transB, size, n, k, alpha, transA ? a + start : a + start * lda, lda, b, ldb,
                     beta, c + start * ldc, ldc)
            }
        }
    }

    /// A product much deeper than wide (the lm head's backward: k = vocabulary) cut along k: each
    /// block packs only its own slices of A and B (a cut of m or n would pack one whole operand in
    /// every block); the partial products are added to C in block order.
    private static func gemmSplittingDepth(
        parts count: Int, transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
        a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
        beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        let depth = ((k + count - 1) / count + 15) / 16 * 16
        let blocks = (k + depth - 1) / depth
        let partials = UnsafeMutablePointer<Float>.allocate(capacity: (blocks - 1) * m * n)
        defer { partials.deallocate() }
        let (aAddress, bAddress, cAddress) = (UInt(bitPattern: a), UInt(bitPattern: b), UInt(bitPattern: c))
        let partialsAddress = UInt(bitPattern: partials)
        Parallel.run(blocks) { index in
            let start = index * depth, size = min(depth, k - start)
            let a = UnsafePointer<Float>(bitPattern: aAddress).unsafelyUnwrapped
            let b = UnsafePointer<Float>(bitPattern: bAddress).unsafelyUnwrapped
            let aBlock = transA ? a + start * lda : a + start, bBlock = transB ? b + start : b + start * ldb
            if index == 0 {
                let c = UnsafeMutablePointer<Float>(bitPattern: cAddress).unsafelyUnwrapped
                call(transA, transB, m, n, size, alpha, aBlock, lda, bBlock, ldb, beta, c, ldc)
            } else {
                let partial = UnsafeMutablePointer<Float>(bitPattern: partialsAddress).unsafelyUnwrapped + (index - 1) * m * n
                call(transA, transB, m, n, size, alpha, aBlock, lda, bBlock, ldb, 0, partial, n)
            }
        }
        Parallel.forEach(m, costPerItem: n * blocks) { rows in
            let c = UnsafeMutablePointer<Float>(bitPattern: cAddress).unsafelyUnwrapped
            let partials = UnsafeMutablePointer<Float>(bitPattern: partialsAddress).unsafelyUnwrapped
            for row in rows {
                for block in 1..<blocks { Kernels.add(c + row * ldc, partials + (block - 1) * m * n + row * n, count: n) }
            }
        }
    }

    @inline(__always)
    private static func call(
        _ transA: Bool, _ transB: Bool, _ m: Int, _ n: Int, _ k: Int, _ alpha: Float,
        _ a: UnsafePointer<Float>, _ lda: Int, _ b: UnsafePointer<Float>, _ ldb: Int,
        _ beta: Float, _ c: UnsafeMutablePointer<Float>, _ ldc: Int
    ) {
        cblas_sgemm(
            CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
            Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }

    /// The linear layer `Y[rows,out] = X[rows,in] · W[out,in]ᵀ (+ beta · Y)`, weights as Hugging Face stores them.
    public static func linear(
        _ x: UnsafePointer<Float>, rows: Int, inFeatures: Int,
        weight: UnsafePointer<Float>, outFeatures: Int,
        into y: UnsafeMutablePointer<Float>, accumulate: Bool = false
    ) {
        gemm(transA: false, transB: true, m: rows, n: outFeatures, k: inFeatures,
             a: x, lda: inFeatures, b: weight, ldb: inFeatures,
             beta: accumulate ? 1 : 0, c: y, ldc: outFeatures)
    }
}
