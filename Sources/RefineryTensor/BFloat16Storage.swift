import CRefineryKernels

/// Owned, 64-byte-aligned storage for `count` bfloat16 values (their 16-bit patterns).
public final class BFloat16Storage: @unchecked Sendable {
    /// Number of elements.
    public let count: Int
    /// The first element's bits.
    public let pointer: UnsafeMutablePointer<UInt16>

    /// Allocates storage whose elements are not set; every element must be written before it is read.
    public init(uninitializedCount count: Int) {
        self.count = count
        let raw = UnsafeMutableRawPointer.allocate(byteCount: max(count, 1) * 2, alignment: 64)
        pointer = raw.bindMemory(to: UInt16.self, capacity: max(count, 1))
    }

    /// The values of `source` rounded to bfloat16 (nearest even), converted on all threads.
    public convenience init(rounding source: UnsafePointer<Float>, count: Int) {
        self.init(uninitializedCount: count)
        BFloat16Storage.round(source, into: pointer, count: count)
    }

    deinit { UnsafeMutableRawPointer(pointer).deallocate() }

    /// Writes bfloat16(`source[i]`) into `target[i]` for `i < count`, on all threads for big buffers.
    /// The bits do not depend on the thread count or the instruction set.
    public static func round(_ source: UnsafePointer<Float>, into target: UnsafeMutablePointer<UInt16>, count: Int) {
        let (s, t) = (SendablePointer(UnsafeMutablePointer(mutating: source)), SendablePointer(target))
        Parallel.forEach((count + 4095) / 4096, costPerItem: 4096) { blocks in
            let start = blocks.lowerBound * 4096, end = Swift.min(count, blocks.upperBound * 4096)
            rk_f32_to_bf16(s.pointer + start, t.pointer + start, end - start)
        }
    }

    /// Writes the exact float value of `source[i]` into `target[i]` for `i < count`.
    public static func widen(_ source: UnsafePointer<UInt16>, into target: UnsafeMutablePointer<Float>, count: Int) {
        let (s, t) = (SendablePointer(UnsafeMutablePointer(mutating: source)), SendablePointer(target))
        Parallel.forEach((count + 4095) / 4096, costPerItem: 4096) { blocks in
            let start = blocks.lowerBound * 4096, end = Swift.min(count, blocks.upperBound * 4096)
            rk_bf16_to_f32(s.pointer + start, t.pointer + start, end - start)
        }
    }
}
