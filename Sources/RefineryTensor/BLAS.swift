import COpenBLAS

/// Matrix products through OpenBLAS `cblas_sgemm`, row-major.
public enum BLAS {
    /// Sets the OpenBLAS thread count (call once, before heavy work).
    public static func setThreads(_ count: Int) {
        openblas_set_num_threads(Int32(count))
    }

    /// The OpenBLAS thread count in force. OpenBLAS splits a product differently for different
    /// thread counts, and the bits of the result change with it: two processes agree bit for bit
    /// only when they use the same count.
    public static var threadCount: Int { Int(openblas_get_num_threads()) }

    /// `C[m,n] = alpha · op(A) · op(B) + beta · C`, row-major, with explicit leading dimensions.
    ///
    /// `op(A)` is `[m,k]`: A is stored `[m,k]` (`transA == false`, `lda ≥ k`) or `[k,m]` (`lda ≥ m`).
    /// `op(B)` is `[k,n]`: B is stored `[k,n]` (`transB == false`, `ldb ≥ n`) or `[n,k]` (`ldb ≥ k`).
    @inline(__always)
    public static func gemm(
        transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
        alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
        b: UnsafePointer<Float>, ldb: Int,
        beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        if m == 0 || n == 0 { return }
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
