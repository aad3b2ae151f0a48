import CRefineryKernels
import Foundation

/// Products with a 4-bit weight (`NF4Matrix`): the weight is dequantized a tile of output rows at
/// a time — at most `tileValues` values, never the whole matrix of a large model — into reused
/// buffers, and each tile feeds the ordinary float32 or bfloat16 product. The tiles depend only
/// on the shape, so the sums (and bits) are the same on every machine and thread count.
public enum NF4Product {
    /// The most values one dequantized tile holds (8 Mi: 32 MB in float32, 16 MB in bfloat16;
    /// a Llama-3-8B MLP weight is ~7 tiles).
    public static let tileValues = 1 << 23

    /// Output rows per tile for a `[rows, cols]` weight: a multiple of 16 (or all rows).
    public static func tileRows(rows: Int, cols: Int, tileValues: Int = tileValues) -> Int {
        let fitting = max(16, tileValues / max(cols, 1) / 16 * 16)
        return min(rows, fitting)
    }

    /// `y[m, out] (+)= x[m, in] · Wᵀ` with the products in `products` precision (bfloat16 rounds `x` first).
    /// `tileValues` bounds a tile (tests make it small to see several).
    public static func linear(_ x: UnsafePointer<Float>, rows m: Int, weight: NF4Matrix, products: ComputeDType,
                              into y: UnsafeMutablePointer<Float>, accumulate: Bool, tileValues: Int = tileValues) {
        let (out, inFeatures) = (weight.shape[0], weight.shape[1])
        guard m > 0 else { return }
        let x16 = products == .bfloat16 ? BFloat16Storage(rounding: x, count: m * inFeatures) : nil
        forEachTile(weight, products: products, tileValues: tileValues) { first, count, floats, halves in
            if let x16, let halves {
                BLAS.gemmBF16(transA: false, transB: true, m: m, n: count, k: inFeatures, a: x16.pointer, lda: inFeatures,
                              b: halves, ldb: inFeatures, beta: accumulate ? 1 : 0, c: y + first, ldc: out)
            } else {
                BLAS.gemm(transA: false, transB: true, m: m, n: count, k: inFeatures, a: x, lda: inFeatures,
                          b: floats, ldb: inFeatures, beta: accumulate ? 1 : 0, c: y + first, ldc: out)
            }
        }
    }

    /// `dx[m, in] (+)= dy[m, out] · W`, the tiles' contributions added in tile order.
    public static func inputGradient(_ dy: UnsafePointer<Float>, rows m: Int, weight: NF4Matrix, products: ComputeDType,
                                     into dx: UnsafeMutablePointer<Float>, accumulate: Bool, tileValues: Int = tileValues) {
        let (out, inFeatures) = (weight.shape[0], weight.shape[1])
        guard m > 0 else { return }
        let dy16 = products == .bfloat16 ? BFloat16Storage(rounding: dy, count: m * out) : nil
        forEachTile(weight, products: products, tileValues: tileValues) { first, count, floats, halves in
            let beta: Float = first == 0 && !accumulate ? 0 : 1
            if let dy16, let halves {
                BLAS.gemmBF16(transA: false, transB: false, m: m, n: inFeatures, k: count, a: dy16.pointer + first, lda: out,
                              b: halves, ldb: inFeatures, beta: beta, c: dx, ldc: inFeatures)
            } else {
                BLAS.gemm(transA: false, transB: false, m: m, n: inFeatures, k: count, a: dy + first, lda: out,
                          b: floats, ldb: inFeatures, beta: beta, c: dx, ldc: inFeatures)
            }
        }
    }

    /// Calls `body(first row, row count, float32 tile, bfloat16 tile?)` for each tile of output
    /// rows in order, the tile dequantized (and in bfloat16 rounded) on all threads.
    private static func forEachTile(_ weight: NF4Matrix, products: ComputeDType, tileValues: Int,
                                    _ body: (Int, Int, UnsafePointer<Float>, UnsafePointer<UInt16>?) -> Void) {
        let (rows, cols) = (weight.shape[0], weight.shape[1])
        let tile = tileRows(rows: rows, cols: cols, tileValues: tileValues)
        let buffers = TileBuffers.shared.take(values: tile * cols)
        defer { TileBuffers.shared.giveBack(buffers) }
        let floats = SendablePointer(buffers.floats), halves = SendablePointer(buffers.halves)
        let rounding = products == .bfloat16
        for first in stride(from: 0, to: rows, by: tile) {
            let count = min(tile, rows - first)
            Parallel.forEach(count, costPerItem: cols * 3) { range in
                let start = range.lowerBound * cols, values = range.count * cols
                let flat = (first * cols + start)..<(first * cols + start + values)
                if rounding {
                    weight.dequantizeBFloat16(flat, into: halves.pointer + start)
                } else {
                    weight.dequantize(flat, into: floats.pointer + start)
                }
            }
            body(first, count, floats.pointer, rounding ? UnsafePointer(halves.pointer) : nil)
        }
    }
}

/// Reused tile buffers (fresh 48 MB per product would be faulted in and cleared every time): a
/// caller takes a pair, or a new one when the spare is in use or too small, and gives it back.
final class TileBuffers: @unchecked Sendable {
    static let shared = TileBuffers()

    final class Pair: @unchecked Sendable {
        let capacity: Int
        let floats: UnsafeMutablePointer<Float>
        let halves: UnsafeMutablePointer<UInt16>
        init(capacity: Int) {
            self.capacity = capacity
            floats = .allocate(capacity: capacity)
            halves = .allocate(capacity: capacity)
        }
        deinit {
            floats.deallocate()
            halves.deallocate()
        }
    }

    private let lock = NSLock()
    private var spare: Pair?

    func take(values: Int) -> Pair {
        lock.lock()
        let candidate = spare
        spare = nil
        lock.unlock()
        if let candidate, candidate.capacity >= values { return candidate }
        return Pair(capacity: values)
    }

    func giveBack(_ pair: Pair) {
        lock.lock()
        defer { lock.unlock() }
        if (spare?.capacity ?? 0) < pair.capacity { spare = pair }
    }
}
