import RefineryTensor

/// Tokenizes many texts on all of Refinery's threads (tokenizing is a tenth of an encoder's time
/// on short texts; on one thread it leaves the other cores idle).
enum ParallelTokenization {
    /// `tokenize(texts[i])` for every `i`, in order.
    static func ids(_ texts: [String], _ tokenize: @Sendable (String) -> [Int]) -> [[Int]] {
        if texts.isEmpty { return [] }
        let buffer = UnsafeMutablePointer<[Int]>.allocate(capacity: texts.count)
        buffer.initialize(repeating: [], count: texts.count)
        defer { buffer.deinitialize(count: texts.count); buffer.deallocate() }
        let shared = SendablePointer(buffer)
        texts.withUnsafeBufferPointer { source in
            guard let base = source.baseAddress else { return }
            let input = SendablePointer(UnsafeMutablePointer(mutating: base))
            Parallel.forEach(texts.count, costPerItem: 100_000) { range in
                for i in range { shared.pointer[i] = tokenize(input.pointer[i]) }
            }
        }
        return Array(UnsafeBufferPointer(start: buffer, count: texts.count))
    }
}
