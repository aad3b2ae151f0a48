/// A dense, row-major Float32 tensor over one contiguous, owned buffer.
///
/// `Tensor` is a reference to its storage: copying the struct shares the buffer. Kernels read and
/// write through `pointer`; nothing here tracks gradients (backward passes are explicit).
public struct Tensor: @unchecked Sendable {
    /// The dimensions, outermost first.
    public let shape: [Int]
    /// The storage that owns the elements.
    public let storage: FloatStorage

    /// Allocates a zero-filled tensor of `shape`.
    public init(zeros shape: [Int]) {
        self.shape = shape
        self.storage = FloatStorage(count: shape.reduce(1, *))
    }

    /// Allocates a tensor of `shape` whose elements are not set: for outputs that a kernel
    /// overwrites whole (a product with beta 0, a copy), where zero-filling first is wasted work.
    /// Every element must be written before it is read.
    public init(uninitialized shape: [Int]) {
        self.shape = shape
        self.storage = FloatStorage(uninitializedCount: shape.reduce(1, *))
    }

    /// Wraps `values` (which must hold exactly `shape.reduce(1, *)` elements).
    public init(shape: [Int], values: [Float]) {
        precondition(values.count == shape.reduce(1, *), "Tensor: \(values.count) values for shape \(shape)")
        self.shape = shape
        self.storage = FloatStorage(count: values.count)
        values.withUnsafeBufferPointer { source in
            if let base = source.baseAddress { storage.pointer.update(from: base, count: values.count) }
        }
    }

    /// Shares `storage` under a new shape with the same element count.
    public init(shape: [Int], storage: FloatStorage) {
        precondition(storage.count == shape.reduce(1, *), "Tensor: storage of \(storage.count) for shape \(shape)")
        self.shape = shape
        self.storage = storage
    }

    /// Number of elements.
    public var count: Int { storage.count }
    /// Mutable pointer to the first element.
    public var pointer: UnsafeMutablePointer<Float> { storage.pointer }
    /// The elements copied into an array (for tests and small outputs).
    public var array: [Float] { Array(UnsafeBufferPointer(start: storage.pointer, count: storage.count)) }

    /// A view with a different shape over the same storage.
    public func reshaped(_ newShape: [Int]) -> Tensor { Tensor(shape: newShape, storage: storage) }

    /// A deep copy (big tensors are copied on all threads).
    public func copy() -> Tensor {
        let result = Tensor(uninitialized: shape)
        let (source, target, count) = (SendablePointer(pointer), SendablePointer(result.pointer), count)
        let block = 1 << 15
        Parallel.forEach((count + block - 1) / block, costPerItem: block) { blocks in
            let start = blocks.lowerBound * block, end = Swift.min(count, blocks.upperBound * block)
            (target.pointer + start).update(from: source.pointer + start, count: end - start)
        }
        return result
    }
}

/// Owned, 64-byte-aligned storage for `count` floats.
public final class FloatStorage: @unchecked Sendable {
    /// Number of elements.
    public let count: Int
    /// The first element.
    public let pointer: UnsafeMutablePointer<Float>

    /// Allocates zero-filled storage.
    public convenience init(count: Int) {
        self.init(uninitializedCount: count)
        pointer.initialize(repeating: 0, count: max(count, 1))
    }

    /// Allocates storage whose elements are not set (see `Tensor(uninitialized:)`).
    public init(uninitializedCount count: Int) {
        self.count = count
        let raw = UnsafeMutableRawPointer.allocate(byteCount: max(count, 1) * MemoryLayout<Float>.stride, alignment: 64)
        pointer = raw.bindMemory(to: Float.self, capacity: max(count, 1))
    }

    deinit { UnsafeMutableRawPointer(pointer).deallocate() }
}
