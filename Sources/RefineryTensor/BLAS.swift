import COpenBLAS
import CRefineryKernels
import Synchronization

/// Matrix products, row-major, on Refinery's pool: float32 (`gemm`) and bfloat16 operands with
/// float32 accumulation and output (`gemmBF16`), each block computed by the process's
/// `ProductBackend` (oneDNN or OpenBLAS) single-threaded on the thread that runs it.
///
/// A big product is cut into `threadCount` column, row or (when it is much deeper than wide) depth
/// blocks that run on `Parallel`'s pool. The cut depends only on the shape and `threadCount`, so
/// the bits of a result do not depend on how many threads actually run; no backend starts threads
/// of its own (OpenBLAS is set to one thread, oneDNN's OpenMP to one per calling thread).
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

    /// The element type of a product's operands.
    enum Operands {
        case float32, bfloat16
        var size: Int { self == .float32 ? 4 : 2 }
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
        product(.float32, parts: threadCount, backend: ProductBackend.current, transA: transA, transB: transB, m: m, n: n, k: k,
                alpha: alpha, a: UnsafeRawPointer(a), lda: lda, b: UnsafeRawPointer(b), ldb: ldb, beta: beta, c: c, ldc: ldc)
    }

    /// `gemm` with bfloat16 operands (their bit patterns), accumulated and written in float32.
    public static func gemmBF16(
        transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
        alpha: Float = 1, a: UnsafePointer<UInt16>, lda: Int,
        b: UnsafePointer<UInt16>, ldb: Int,
        beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        product(.bfloat16, parts: threadCount, backend: ProductBackend.current, transA: transA, transB: transB, m: m, n: n, k: k,
                alpha: alpha, a: UnsafeRawPointer(a), lda: lda, b: UnsafeRawPointer(b), ldb: ldb, beta: beta, c: c, ldc: ldc)
    }

    /// `gemm` cut into at most `count` blocks (tests pick the cut without touching the global setting).
    static func gemm(
        parts count: Int, backend: ProductBackend = ProductBackend.current, transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
        alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
        b: UnsafePointer<Float>, ldb: Int,
        beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        product(.float32, parts: count, backend: backend, transA: transA, transB: transB, m: m, n: n, k: k,
                alpha: alpha, a: UnsafeRawPointer(a), lda: lda, b: UnsafeRawPointer(b), ldb: ldb, beta: beta, c: c, ldc: ldc)
    }

    /// `gemmBF16` cut into at most `count` blocks on `backend` (tests).
    static func gemmBF16(
        parts count: Int, backend: ProductBackend, transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
        alpha: Float = 1, a: UnsafePointer<UInt16>, lda: Int, b: UnsafePointer<UInt16>, ldb: Int,
        beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        product(.bfloat16, parts: count, backend: backend, transA: transA, transB: transB, m: m, n: n, k: k,
                alpha: alpha, a: UnsafeRawPointer(a), lda: lda, b: UnsafeRawPointer(b), ldb: ldb, beta: beta, c: c, ldc: ldc)
    }

    /// The cut: blocks of columns, rows or depth, each computed by `block`.
    private static func product(
        _ operands: Operands, parts count: Int, backend: ProductBackend, transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
        alpha: Float, a: UnsafeRawPointer, lda: Int, b: UnsafeRawPointer, ldb: Int,
        beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        if m == 0 || n == 0 { return }
        _ = singleThreaded
        let size = operands.size
        if count > 1 && k >= 4 * max(m, n) && m * n * k >= 1 << 21 {
            productSplittingDepth(operands, parts: count, backend: backend, transA: transA, transB: transB, m: m, n: n, k: k,
                                  alpha: alpha, a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: c, ldc: ldc)
            return
        }
        let cut = Cut(m: m, n: n, k: k, parts: count)
        let (byColumns, extent, blockSize, blocks) = (cut.byColumns, cut.extent, cut.blockSize, cut.blocks)
        if !cut.parallel {
            block(operands, backend, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
            return
        }
        let (aAddress, bAddress, cAddress) = (UInt(bitPattern: a), UInt(bitPattern: b), UInt(bitPattern: c))
        Parallel.run(blocks) { index in
            let start = index * blockSize, extentHere = min(blockSize, extent - start)
            let a = UnsafeRawPointer(bitPattern: aAddress).unsafelyUnwrapped
            let b = UnsafeRawPointer(bitPattern: bAddress).unsafelyUnwrapped
            let c = UnsafeMutablePointer<Float>(bitPattern: cAddress).unsafelyUnwrapped
            if byColumns {
                block(operands, backend, transA, transB, m, extentHere, k, alpha, a, lda,
                      b + (transB ? start * ldb : start) * size, ldb, beta, c + start, ldc)
            } else {
                block(operands, backend, transA, transB, extentHere, n, k, alpha, a + (transA ? start : start * lda) * size, lda,
                      b, ldb, beta, c + start * ldc, ldc)
            }
        }
    }

    /// How a product of `m × n` outputs and depth `k` is cut into blocks of columns or rows for
    /// `parts` threads; the cut depends only on the shape and `parts`.
    struct Cut {
        /// Columns (else rows) are cut: the dimension whose other operand is cheaper to pack
        /// twice — columns repeat A's packing in every block, rows repeat B's.
        let byColumns: Bool
        /// The cut dimension's size, each block's share of it (a multiple of 16) and the block count.
        let extent: Int, blockSize: Int, blocks: Int
        /// False: the product runs whole on the calling thread.
        let parallel: Bool

        init(m: Int, n: Int, k: Int, parts count: Int) {
            byColumns = m <= n
            extent = byColumns ? n : m
            // Two blocks per thread when they stay big (≥ 256 rows or columns): threads take them as
            // they finish, so one slow block no longer leaves the other threads waiting (MiniLM-L6
            // classifier, 4,096-row products on 2 threads: 12.1 s → 11.0 s).
            let pieces = extent >= 512 * count ? 2 * count : count
            let width = (extent + pieces - 1) / pieces
            blockSize = (width + 15) / 16 * 16
            blocks = (extent + blockSize - 1) / blockSize
            // Small products run on the calling thread, unless they stream a big operand (decoding's
            // one-row products are bound by reading the weight, which both cores read faster).
            let streamed = byColumns ? n * k : m * k
            parallel = !(count <= 1 || blocks <= 1 || (m * n * k < 1 << 21 && streamed < 1 << 17))
        }
    }

    /// A product much deeper than wide (the lm head's backward: k = vocabulary) cut along k: each
    /// block packs only its own slices of A and B (a cut of m or n would pack one whole operand in
    /// every block); the partial products are added to C in block order.
    private static func productSplittingDepth(
        _ operands: Operands, parts count: Int, backend: ProductBackend, transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
        alpha: Float, a: UnsafeRawPointer, lda: Int, b: UnsafeRawPointer, ldb: Int,
        beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        let size = operands.size
        let depth = ((k + count - 1) / count + 15) / 16 * 16
        let blocks = (k + depth - 1) / depth
        let partials = UnsafeMutablePointer<Float>.allocate(capacity: (blocks - 1) * m * n)
        defer { partials.deallocate() }
        let (aAddress, bAddress, cAddress) = (UInt(bitPattern: a), UInt(bitPattern: b), UInt(bitPattern: c))
        let partialsAddress = UInt(bitPattern: partials)
        Parallel.run(blocks) { index in
            let start = index * depth, depthHere = min(depth, k - start)
            let a = UnsafeRawPointer(bitPattern: aAddress).unsafelyUnwrapped
            let b = UnsafeRawPointer(bitPattern: bAddress).unsafelyUnwrapped
            let aBlock = a + (transA ? start * lda : start) * size, bBlock = b + (transB ? start : start * ldb) * size
            if index == 0 {
                let c = UnsafeMutablePointer<Float>(bitPattern: cAddress).unsafelyUnwrapped
                block(operands, backend, transA, transB, m, n, depthHere, alpha, aBlock, lda, bBlock, ldb, beta, c, ldc)
            } else {
                let partial = UnsafeMutablePointer<Float>(bitPattern: partialsAddress).unsafelyUnwrapped + (index - 1) * m * n
                block(operands, backend, transA, transB, m, n, depthHere, alpha, aBlock, lda, bBlock, ldb, 0, partial, n)
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

    /// One block on the calling thread.
    @inline(__always)
    private static func block(
        _ operands: Operands, _ backend: ProductBackend, _ transA: Bool, _ transB: Bool, _ m: Int, _ n: Int, _ k: Int,
        _ alpha: Float, _ a: UnsafeRawPointer, _ lda: Int, _ b: UnsafeRawPointer, _ ldb: Int,
        _ beta: Float, _ c: UnsafeMutablePointer<Float>, _ ldc: Int
    ) {
        if backend == .onednn {
            let type = Int32(operands == .float32 ? RK_DNNL_F32 : RK_DNNL_BF16)
            if rk_dnnl_gemm(type, transA ? 1 : 0, transB ? 1 : 0, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) != 0 { return }
        }
        switch operands {
        case .float32:
            openBLAS(transA, transB, m, n, k, alpha, a.assumingMemoryBound(to: Float.self), lda,
                     b.assumingMemoryBound(to: Float.self), ldb, beta, c, ldc)
        case .bfloat16:
            // OpenBLAS 0.3.21 has no bfloat16 product: widen this block's operands (exactly) and
            // run the float32 one.
            let (aRows, aCols) = transA ? (k, m) : (m, k), (bRows, bCols) = transB ? (n, k) : (k, n)
            let wideA = UnsafeMutablePointer<Float>.allocate(capacity: max(aRows * aCols, 1))
            let wideB = UnsafeMutablePointer<Float>.allocate(capacity: max(bRows * bCols, 1))
            defer { wideA.deallocate(); wideB.deallocate() }
            let a16 = a.assumingMemoryBound(to: UInt16.self), b16 = b.assumingMemoryBound(to: UInt16.self)
            for row in 0..<aRows { rk_bf16_to_f32(a16 + row * lda, wideA + row * aCols, aCols) }
            for row in 0..<bRows { rk_bf16_to_f32(b16 + row * ldb, wideB + row * bCols, bCols) }
            openBLAS(transA, transB, m, n, k, alpha, wideA, aCols, wideB, bCols, beta, c, ldc)
        }
    }

    @inline(__always)
    private static func openBLAS(
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

    /// The linear layer `Y[rows,out] (+)= X[rows,in] · Wᵀ` in the weight's precision (a bfloat16
    /// weight rounds X to bfloat16 first; the sums are float32 either way).
    public static func linear(
        _ x: UnsafePointer<Float>, rows: Int, weight: WeightMatrix,
        into y: UnsafeMutablePointer<Float>, accumulate: Bool = false
    ) {
        let (outFeatures, inFeatures) = (weight.shape[0], weight.shape[1])
        if let q = weight.nf4 {
            NF4Product.linear(x, rows: rows, weight: q, products: weight.nf4Products, into: y, accumulate: accumulate)
        } else if let w = weight.bfloat16 {
            let x16 = BFloat16Storage(rounding: x, count: rows * inFeatures)
            gemmBF16(transA: false, transB: true, m: rows, n: outFeatures, k: inFeatures, a: x16.pointer, lda: inFeatures,
                     b: w.pointer, ldb: inFeatures, beta: accumulate ? 1 : 0, c: y, ldc: outFeatures)
        } else if let w = weight.float {
            linear(x, rows: rows, inFeatures: inFeatures, weight: w.pointer, outFeatures: outFeatures, into: y, accumulate: accumulate)
        }
    }

    /// The input gradient of a linear layer: `dX[rows,in] (+)= dY[rows,out] · W[out,in]`, in the
    /// weight's precision.
    public static func linearInputGradient(
        _ dy: UnsafePointer<Float>, rows: Int, weight: WeightMatrix,
        into dx: UnsafeMutablePointer<Float>, accumulate: Bool = false
    ) {
        let (outFeatures, inFeatures) = (weight.shape[0], weight.shape[1])
        if let q = weight.nf4 {
            NF4Product.inputGradient(dy, rows: rows, weight: q, products: weight.nf4Products, into: dx, accumulate: accumulate)
        } else if let w = weight.bfloat16 {
            let dy16 = BFloat16Storage(rounding: dy, count: rows * outFeatures)
            gemmBF16(transA: false, transB: false, m: rows, n: inFeatures, k: outFeatures, a: dy16.pointer, lda: outFeatures,
                     b: w.pointer, ldb: inFeatures, beta: accumulate ? 1 : 0, c: dx, ldc: inFeatures)
        } else if let w = weight.float {
            gemm(transA: false, transB: false, m: rows, n: inFeatures, k: outFeatures, a: dy, lda: outFeatures,
                 b: w.pointer, ldb: inFeatures, beta: accumulate ? 1 : 0, c: dx, ldc: inFeatures)
        }
    }

    /// The weight gradient of a linear layer: `dW[out,in] += dY[rows,out]ᵀ · X[rows,in]`, with
    /// bfloat16 operands when `dtype` is bfloat16 (autocast's rule for the weight's product).
    public static func addLinearWeightGradient(
        _ dy: UnsafePointer<Float>, x: UnsafePointer<Float>, rows: Int, outFeatures: Int, inFeatures: Int,
        dtype: ComputeDType, into dW: UnsafeMutablePointer<Float>
    ) {
        switch dtype {
        case .float32:
            gemm(transA: true, transB: false, m: outFeatures, n: inFeatures, k: rows,
                 a: dy, lda: outFeatures, b: x, ldb: inFeatures, beta: 1, c: dW, ldc: inFeatures)
        case .bfloat16:
            let dy16 = BFloat16Storage(rounding: dy, count: rows * outFeatures)
            let x16 = BFloat16Storage(rounding: x, count: rows * inFeatures)
            gemmBF16(transA: true, transB: false, m: outFeatures, n: inFeatures, k: rows,
                     a: dy16.pointer, lda: outFeatures, b: x16.pointer, ldb: inFeatures, beta: 1, c: dW, ldc: inFeatures)
        }
    }
}
