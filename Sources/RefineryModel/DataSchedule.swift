import Foundation
import RefineryCore
import RefineryText

/// Which sequences every micro-batch of every step holds: a pure function of (seed, epoch, step)
/// and the dataset (DESIGN §3.9), so a run's result does not depend on who computes it or when.
///
/// The units of the stream are samples, or with packing the rows that each epoch's order packs
/// into; epochs follow one another (epoch 0's units, then epoch 1's, …). Orders and packed rows
/// are computed once per epoch and remembered.
public final class DataSchedule: @unchecked Sendable {
    /// Samples (already encoded and truncated) in file order.
    public let samples: [EncodedSample]
    public let microBatchSize: Int
    public let accumulation: Int
    public let shuffle: Bool
    public let seed: UInt64
    /// Pack samples end to end into rows of this many tokens (nil: one sample per sequence).
    public let packingLength: Int?

    private let lock = NSLock()
    private var orders: [Int: [Int]] = [:]
    private var rows: [Int: [TrainingSequence]] = [:]
    /// `epochStarts[e]`: index in the stream of epoch e's first unit.
    private var epochStarts: [Int] = [0]

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
        lock.lock()
        defer { lock.unlock() }
        return orderLocked(epoch: epoch)
    }

    private func orderLocked(epoch: Int) -> [Int] {
        if let cached = orders[epoch] { return cached }
        var order = Array(0..<samples.count)
        if shuffle {
            var generator = SplitMix64(seed: seed &+ 0xD1B5_4A32_D192_ED03 &* UInt64(epoch + 1))
            for i in stride(from: order.count - 1, to: 0, by: -1) {
                let j = Int(generator.next() % UInt64(i + 1))
                order.swapAt(i, j)
            }
        }
        if orders.count > 4 { orders.removeAll() }
        orders[epoch] = order
        return order
    }

    /// The packed rows of `epoch` (greedy, in that epoch's order): samples laid end to end, positions
    /// restarting and attention confined to each sample (DESIGN §3.4).
    public func packedRows(epoch: Int, length: Int) -> [TrainingSequence] {
        lock.lock()
        defer { lock.unlock() }
        return packedRowsLocked(epoch: epoch, length: length)
    }

    private func packedRowsLocked(epoch: Int, length: Int) -> [TrainingSequence] {
        if let cached = rows[epoch] { return cached }
        var result: [TrainingSequence] = []
        var current = TrainingSequence(ids: [], trained: [], positions: [], keyStart: [])
        for index in orderLocked(epoch: epoch) {
            let sample = samples[index]
            if !current.ids.isEmpty && current.ids.count + sample.ids.count > length {
                result.append(current)
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
        if !current.ids.isEmpty { result.append(current) }
        if rows.count > 2 { rows.removeAll() }
        rows[epoch] = result
        return result
    }

    private func unitCountLocked(epoch: Int) -> Int {
        guard let length = packingLength else { return samples.count }
        return packedRowsLocked(epoch: epoch, length: length).count
    }

    /// Units (samples or packed rows) in epoch 0.
    public var unitsPerEpoch: Int {
        lock.lock()
        defer { lock.unlock() }
        return unitCountLocked(epoch: 0)
    }

    /// Optimizer steps in one epoch (of epoch 0's size).
    public var stepsPerEpoch: Int {
        let perStep = microBatchSize * accumulation
        return max(1, (unitsPerEpoch + perStep - 1) / perStep)
    }

    /// The unit at position `index` of the endless stream epoch 0, epoch 1, …
    public func unit(at index: Int) -> TrainingSequence {
        lock.lock()
        defer { lock.unlock() }
        while epochStarts[epochStarts.count - 1] <= index {
            let epoch = epochStarts.count - 1
            epochStarts.append(epochStarts[epoch] + max(1, unitCountLocked(epoch: epoch)))
        }
        var epoch = epochStarts.count - 2
        while epochStarts[epoch] > index { epoch -= 1 }
        let offset = index - epochStarts[epoch]
        if let length = packingLength {
            return packedRowsLocked(epoch: epoch, length: length)[offset]
        }
        let sample = samples[orderLocked(epoch: epoch)[offset]]
        return TrainingSequence(ids: sample.ids, trained: sample.trained)
    }

    /// The micro-batches of optimizer step `step` (0-based): `accumulation` lists of sequences.
    public func microBatches(step: Int) -> [[TrainingSequence]] {
        (0..<accumulation).map { micro in
            (0..<microBatchSize).map { slot in unit(at: (step * accumulation + micro) * microBatchSize + slot) }
        }
    }
}
