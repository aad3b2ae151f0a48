import CRefineryKernels
import Foundation

/// Runs the loops of the training step and the split matrix products on a persistent pool of
/// `Parallel.threadCount` threads (the caller included).
///
/// The pool's workers spin briefly between jobs instead of sleeping, so the hundreds of short
/// parallel regions of a training step start without a wake-up each; OpenBLAS runs single-threaded
/// inside them (see `BLAS`), so no second pool competes for the cores.
public enum Parallel {
    /// Threads used by `forEach`: the machine's active processor count by default, or
    /// `REFINERY_THREADS` when set.
    public static let threadCount: Int = {
        let requested: Int
        if let text = ProcessInfo.processInfo.environment["REFINERY_THREADS"], let value = Int(text), value > 0 {
            requested = value
        } else {
            requested = max(1, ProcessInfo.processInfo.activeProcessorCount)
        }
        return Int(rk_pool_start(Int32(min(requested, 256))))
    }()

    /// Calls `body(range)` for disjoint ranges covering `0..<count`, in parallel when the work is
    /// big enough (`count * costPerItem` above ~32k operations). The ranges depend only on `count`
    /// and `threadCount`, never on which thread runs them.
    public static func forEach(_ count: Int, costPerItem: Int = 1, _ body: @Sendable (Range<Int>) -> Void) {
        if count <= 0 { return }
        let threads = min(threadCount, count)
        if threads <= 1 || count * max(costPerItem, 1) < minimumWork {
            body(0..<count)
            return
        }
        let chunk = (count + threads - 1) / threads
        run(threads) { index in
            let start = index * chunk
            let end = min(count, start + chunk)
            if start < end { body(start..<end) }
        }
    }

    /// Work (in rough operations) below which a loop runs on the calling thread alone.
    static let minimumWork = 32_768

    /// Calls `body(i)` once for each `i` in `0..<count`, spread over the pool's threads, which take
    /// the next index left when they are free; inline when `totalCost` is below ~32k operations.
    public static func run(_ count: Int, totalCost: Int = .max, _ body: @Sendable (Int) -> Void) {
        if count <= 0 { return }
        if count == 1 || totalCost < minimumWork {
            for index in 0..<count { body(index) }
            return
        }
        withoutActuallyEscaping(body) { escapable in
            var job = PoolJob(body: escapable)
            withUnsafeMutablePointer(to: &job) { pointer in
                rk_pool_run(count, pointer) { context, index in
                    guard let context else { return }
                    context.assumingMemoryBound(to: PoolJob.self).pointee.body(index)
                }
            }
        }
    }
}

/// The closure of one pool job, passed to the C pool by address.
private struct PoolJob {
    let body: @Sendable (Int) -> Void
}

/// A pointer that may be captured by the parallel loops; callers guarantee disjoint writes.
public struct SendablePointer<T>: @unchecked Sendable {
    /// The wrapped pointer.
    public let pointer: UnsafeMutablePointer<T>
    /// Wraps `pointer`.
    public init(_ pointer: UnsafeMutablePointer<T>) { self.pointer = pointer }
}
