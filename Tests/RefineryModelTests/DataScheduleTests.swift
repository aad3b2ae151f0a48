import Testing
@testable import RefineryModel
import RefineryText

/// The data order is a pure function of (seed, epoch, step) and the dataset.
@Suite struct DataScheduleTests {
    static func samples(_ lengths: [Int]) -> [EncodedSample] {
        lengths.enumerated().map { index, length in
            EncodedSample(ids: Array(repeating: index, count: length), trained: Array(repeating: true, count: length), truncated: false)
        }
    }

    @Test func noShuffleTakesFileOrderWrappingAround() {
        let schedule = DataSchedule(samples: Self.samples([2, 3, 4]), microBatchSize: 2, accumulation: 1, shuffle: false, seed: 0, packingLength: nil)
        let firstIDs = (0..<3).flatMap { schedule.microBatches(step: $0).joined().map { $0.ids[0] } }
        #expect(firstIDs == [0, 1, 2, 0, 1, 2])
    }

    @Test func shuffleIsSeededAndCoversEachEpoch() {
        let data = Self.samples(Array(repeating: 3, count: 10))
        let a = DataSchedule(samples: data, microBatchSize: 1, accumulation: 5, shuffle: true, seed: 7, packingLength: nil)
        let b = DataSchedule(samples: data, microBatchSize: 1, accumulation: 5, shuffle: true, seed: 7, packingLength: nil)
        let c = DataSchedule(samples: data, microBatchSize: 1, accumulation: 5, shuffle: true, seed: 8, packingLength: nil)
        let epoch0 = (0..<2).flatMap { a.microBatches(step: $0).joined().map { $0.ids[0] } }
        #expect(Set(epoch0) == Set(0..<10))
        #expect(epoch0 == (0..<2).flatMap { b.microBatches(step: $0).joined().map { $0.ids[0] } })
        #expect(epoch0 != (0..<2).flatMap { c.microBatches(step: $0).joined().map { $0.ids[0] } })
        let epoch1 = (2..<4).flatMap { a.microBatches(step: $0).joined().map { $0.ids[0] } }
        #expect(Set(epoch1) == Set(0..<10) && epoch1 != epoch0)
        // Asking for a late step first gives the same answer as walking there.
        let fresh = DataSchedule(samples: data, microBatchSize: 1, accumulation: 5, shuffle: true, seed: 7, packingLength: nil)
        #expect(fresh.microBatches(step: 3).joined().map { $0.ids[0] } == Array(epoch1.suffix(5)))
    }

    @Test func packingKeepsEverySampleAndMasksBoundaries() {
        let data = Self.samples([5, 4, 3, 6, 2])
        let schedule = DataSchedule(samples: data, microBatchSize: 1, accumulation: 1, shuffle: false, seed: 0, packingLength: 10)
        let rows = schedule.packedRows(epoch: 0, length: 10)
        #expect(rows.map(\.ids.count) == [9, 9, 2])
        #expect(rows.flatMap(\.ids).count == 20)
        let first = rows[0]
        #expect(first.positions == [0, 1, 2, 3, 4, 0, 1, 2, 3])
        #expect(first.keyStart == [0, 0, 0, 0, 0, 5, 5, 5, 5])
        #expect(first.trained[0] == false && first.trained[5] == false && first.trained[6])
        #expect(schedule.stepsPerEpoch == 3)
    }
}
