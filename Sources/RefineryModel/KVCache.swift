import RefineryTensor

/// Keys and values of one sequence's past positions, per layer, already rotated — in float32, or
/// in bfloat16 for a bfloat16 model (half the memory; attention widens them to float32).
public final class KVCache: @unchecked Sendable {
    /// Maximum positions.
    public let capacity: Int
    /// Floats per position and layer (`kvHeads × headDim`).
    public let width: Int
    /// The precision keys and values are stored in.
    public let dtype: ComputeDType
    /// Positions filled so far.
    public internal(set) var length = 0
    private let floatRows: [(keys: Tensor, values: Tensor)]
    private let bfloat16Rows: [(keys: BFloat16Storage, values: BFloat16Storage)]

    init(layers: Int, capacity: Int, width: Int, dtype: ComputeDType) {
        self.capacity = capacity
        self.width = width
        self.dtype = dtype
        switch dtype {
        case .float32:
            floatRows = (0..<layers).map { _ in (Tensor(zeros: [capacity, width]), Tensor(zeros: [capacity, width])) }
            bfloat16Rows = []
        case .bfloat16:
            floatRows = []
            bfloat16Rows = (0..<layers).map { _ in
                (BFloat16Storage(uninitializedCount: capacity * width), BFloat16Storage(uninitializedCount: capacity * width))
            }
        }
    }

    /// Bytes held by keys and values.
    public var bytes: Int { (floatRows.count + bfloat16Rows.count) * 2 * capacity * width * (dtype == .float32 ? 4 : 2) }

    /// Stores `rows` positions of `keys` and `values` (`[rows, width]` each) of `layer` at
    /// positions `length ..< length + rows` (the length itself moves once all layers are stored).
    func store(layer: Int, keys: UnsafePointer<Float>, values: UnsafePointer<Float>, rows: Int) {
        let offset = length * width, count = rows * width
        switch dtype {
        case .float32:
            (floatRows[layer].keys.pointer + offset).update(from: keys, count: count)
            (floatRows[layer].values.pointer + offset).update(from: values, count: count)
        case .bfloat16:
            BFloat16Storage.round(keys, into: bfloat16Rows[layer].keys.pointer + offset, count: count)
            BFloat16Storage.round(values, into: bfloat16Rows[layer].values.pointer + offset, count: count)
        }
    }

    /// Calls `body` with the first `positions` keys and values of `layer` as float32 `[positions, width]`
    /// rows: the stored ones, or bfloat16 ones widened into a buffer that lives for the call.
    func withFloatRows<R>(layer: Int, positions: Int, _ body: (UnsafePointer<Float>, UnsafePointer<Float>) -> R) -> R {
        switch dtype {
        case .float32:
            return body(floatRows[layer].keys.pointer, floatRows[layer].values.pointer)
        case .bfloat16:
            let count = positions * width
            let buffer = UnsafeMutablePointer<Float>.allocate(capacity: max(1, 2 * count))
            defer { buffer.deallocate() }
            BFloat16Storage.widen(bfloat16Rows[layer].keys.pointer, into: buffer, count: count)
            BFloat16Storage.widen(bfloat16Rows[layer].values.pointer, into: buffer + count, count: count)
            return body(buffer, buffer + count)
        }
    }
}

/// The next tokens of one sequence in a batched decoding pass, and the cache holding its past.
public struct SequenceStep {
    public var tokens: [Int]
    public var cache: KVCache
    /// A LoRA adapter applied to this sequence's rows only (unmerged: several adapters share one
    /// base in one batch).
    public var adapter: LoRAAdapter?

    public init(tokens: [Int], cache: KVCache, adapter: LoRAAdapter? = nil) {
        self.tokens = tokens
        self.cache = cache
        self.adapter = adapter
    }
}
