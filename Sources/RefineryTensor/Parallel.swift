import Dispatch
import Foundation

/// Runs loops that BLAS does not cover on all cores, in contiguous chunks.
///
/// BLAS and these loops never run at the same time, so together they use at most
/// `Parallel.threadCount` threads.
public enum Parallel {
    /// Worker threads used by `forEach`; the machine's active processor count by default,
    /// or `REFINERY_THREADS` when set.
    public static let threadCount: Int = {
        if let text = ProcessInfo.processInfo.environment["REFINERY_THREADS"], let value = Int(text), value > 0 {
            return value
        }
        return max(1, ProcessInfo.processInfo.activeProcessorCount)
    }()

    /// Calls `body(range)` for disjoint ranges covering `0..<count`, in parallel when the work is
    /// big enough (`count * costPerItem` above ~32k operations).
    public static func forEach(_ count: Int, costPerItem: Int = 1, _ body: @Sendable (Range<Int>) -> Void) {
        if count <= 0 { return }
        let threads = min(threadCount, count)
        if threads <= 1 || count * max(costPerItem, 1) < 32_768 {
            body(0..<count)
            return
        }
        let chunk = (count + threads - 1) / threads
        DispatchQueue.concurrentPerform(iterations: threads) { index in
            let start = index * chunk
            let end = min(count, start + chunk)
            if start < end { body(start..<end) }
        }
    }
}

/// A pointer that may be captured by the parallel loops; callers guarantee disjoint writes.
public struct SendablePointer<T>: @unchecked Sendable {
    /// The wrapped pointer.
    public let pointer: UnsafeMutablePointer<T>
    /// Wraps `pointer`.
    public init(_ pointer: UnsafeMutablePointer<T>) { self.pointer = pointer }
}
