import Foundation
@testable import RefineryCluster
import Testing

/// Task ids and leases: the state file's keys and the wire form round-trip, order is numeric,
/// and numbers outside their ranges are refused.
@Suite struct TaskIDTests {
    @Test func keysAndMessagesRoundTripAndOrderIsNumeric() throws {
        let tasks: [TaskID] = [.chunk(10), .eval(step: 3, index: 0), .microBatch(step: 12, index: 1), .chunk(2), .microBatch(step: 3, index: 7), .call(4)]
        for task in tasks {
            #expect(TaskID(key: task.key) == task)
            #expect(try TaskID(message: task.message) == task)
        }
        #expect(tasks.sorted() == [.chunk(2), .chunk(10), .microBatch(step: 3, index: 7), .microBatch(step: 12, index: 1), .eval(step: 3, index: 0), .call(4)])
        #expect(TaskID.call(4).key == "call:4")
        for key in ["call:", "call:-2", "call:x", "chunk:", "chunk:-1", "train:1", "train:a:1", "eval:1:2:3", "nothing", "train:\(Int.max):0"] { #expect(TaskID(key: key) == nil, "\(key)") }
    }

    @Test func epochsAndStepsOutsideTheirRangesAreRefused() {
        for epoch: UInt64 in [0, 1 << 63, .max] {
            var lease = Lease(task: .chunk(1), epoch: 1).message
            lease.epoch = epoch
            #expect(throws: WireRefusal.self) { try Lease(message: lease) }
        }
        var micro = Refinery_Cluster_TaskId.MicroBatch()
        micro.step = UInt64(TaskID.maxStep) + 1
        var task = Refinery_Cluster_TaskId()
        task.microBatch = micro
        #expect(throws: WireRefusal.self) { try TaskID(message: task) }
        task.chunk = -5
        #expect(throws: WireRefusal.self) { try TaskID(message: task) }
        #expect(throws: WireRefusal.self) { try TaskID(message: Refinery_Cluster_TaskId()) }
    }
}
