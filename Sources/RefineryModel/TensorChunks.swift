import RefineryTensor

/// Fixed-size chunks of a list of tensors, for elementwise passes over every trainable parameter
/// (zeroing, clipping, the optimizer) as one parallel job: a LoRA adapter is hundreds of tensors
/// too small to split one by one, a full model a few large ones. Chunk bounds depend only on the
/// tensors' sizes, never on the thread count.
struct TensorChunks: Sendable {
    static let size = 1 << 16

    /// (tensor index, start, end) of every chunk, tensor by tensor in order.
    let items: [(tensor: Int, start: Int, end: Int)]

    init(counts: [Int]) {
        var items: [(tensor: Int, start: Int, end: Int)] = []
        for (index, count) in counts.enumerated() {
            var start = 0
            while start < count {
                let end = min(count, start + Self.size)
                items.append((index, start, end))
                start = end
            }
        }
        self.items = items
    }

    /// Calls `body(slot, item)` for every chunk (`slot` its position in `items`), spread over
    /// `Parallel`'s threads.
    func forEach(_ body: @Sendable (_ slot: Int, _ item: (tensor: Int, start: Int, end: Int)) -> Void) {
        let items = self.items
        if items.count == 1 || items.reduce(0, { $0 + $1.end - $1.start }) < 32_768 {  // not worth a parallel job
            for (slot, item) in items.enumerated() { body(slot, item) }
            return
        }
        Parallel.run(items.count) { body($0, items[$0]) }
    }
}
