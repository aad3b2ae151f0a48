import RefineryText

/// Which sequences every micro-batch of every step holds: a pure function of (seed, epoch, step)
/// and the dataset (DESIGN §3.9), so a run's result does not depend on who computes it or when.
public struct DataSchedule: Sendable {
    /// Samples (already encoded and truncated) in file order.
    public let samples: [EncodedSample]
    public let microBatchSize: Int
    public let accumulation: Int
    public let shuffle: Bool
    public let seed: UInt64
    /// Pack samples end to end into rows of this many tokens (nil: one sample per sequence).
    public let packingLength: Int?

    public init(samples: [EncodedSample], microBatchSize: Int, accumulation: Int, shuffle: Bool, seed: UInt64, packingLength: Int?) {
        self.samples = samples
        self.microBatchSize = microBatchSize
        self.accumulation = accumulation
        self.shuffle = shuffle
        self.seed = seed
        self.packingLength = packingLength
    }

    /// Sample order of `epoch`: file order, or a seeded Fisher–Yates permutation.
    public func order(epoch: Int) -> [Int] {
        var order = Array(0..<samples.count)
        guard shuffle else { return order }
        var generator = SplitMix64(seed: seed &+ 0xD1B5_4A32_D192_ED03 &* UInt64(epoch + 1))
        for i in stride(from: order.count - 1, to: 0, by: -1) {
            let j = Int(generator.next() % UInt64(i + 1))
            order.swapAt(i, j)
        }
        return order
    }

    /// The packed rows of `epoch` (greedy, in that epoch's order).
    public func packedRows(epoch: Int, length: Int) -> [TrainingSequence] {
        var rows: [TrainingSequence] = []
        var current = TrainingSequence(ids: [], trained: [], positions: [], keyStart: [])
        for index in order(epoch: epoch) {
            let sample = samples[index]
            if !current.ids.isEmpty && current.ids.count + sample.ids.count > length {
                rows.append(current)
                current = TrainingSequence(ids: [], trained: [], positions: [], keyStart: [])
            }
            let start = current.ids.count
            current.ids += sample.ids
            var trained = sample.trained
            if !trained.isEmpty { trained[0] = false }  // never predicted from the previous sample
            current.trained += trained
            current.positions? += Array(0..<sample.ids.count)
            current.keyStart? += Array(repeating: start, count: sample.ids.count)
        }
        if !current.ids.isEmpty { rows.append(current) }
        return rows
    }

    /// Units (samples or packed rows) per epoch.
    public var unitsPerEpoch: Int {
        if let packingLength { return packedRows(epoch: 0, length: packingLength).count }
        return samples.count
    }

    /// Optimizer steps in one epoch.
    public var stepsPerEpoch: Int {
        let perStep = microBatchSize * accumulation
        return max(1, (unitsPerEpoch + perStep - 1) / perStep)
    }

    /// The unit at position `index` of the endless stream epoch 0, epoch 1, …
    public func unit(at index: Int, cache: inout [Int: [TrainingSequence]]) -> TrainingSequence {
        if let length = packingLength {
            let perEpoch = unitsPerEpoch
            let epoch = index / perEpoch
            if cache[epoch] == nil { cache = [epoch: packedRows(epoch: epoch, length: length)] }
            let rows = cache[epoch] ?? []
            return rows[(index % perEpoch) % max(rows.count, 1)]
        }
        let epoch = index / samples.count
        let sample = samples[order(epoch: epoch)[index % samples.count]]
        return TrainingSequence(ids: sample.ids, trained: sample.trained)
    }

    /// The micro-batches of optimizer step `step` (0-based): `accumulation` lists of sequences.
    public func microBatches(step: Int) -> [[TrainingSequence]] {
        var cache: [Int: [TrainingSequence]] = [:]
        return (0..<accumulation).map { micro in
            (0..<microBatchSize).map { slot in
                unit(at: (step * accumulation + micro) * microBatchSize + slot, cache: &cache)
            }
        }
    }
}
