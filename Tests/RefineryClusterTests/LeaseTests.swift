import Foundation
@testable import RefineryCluster
import RefineryStore
import Testing

/// The coordinator's lease rules, driven turn by turn through the in-memory transport with a
/// manual clock: no sockets, no sleeps.
@Suite struct LeaseTests {
    /// A coordinator on memory and a manual clock, with a generation stage over `chunks` chunks.
    final class Harness {
        let store: RunStore
        let transport = InMemoryTransport()
        let clock: ManualClock
        let coordinator: Coordinator
        let stage: GenerationStage

        init(store: RunStore, clock: ManualClock = ManualClock()) throws {
            self.store = store
            self.clock = clock
            var options = CoordinatorOptions(listen: "inproc://unused")
            options.heartbeatInterval = 1
            options.liveness = 3
            options.restartGrace = 45
            coordinator = try Coordinator(store: store, options: options, transport: transport, clock: clock)
            stage = try GenerationStage(store: store)
            try coordinator.begin(stage)
        }

        convenience init(chunks: Int) throws { try self.init(store: try ProtocolTests.store(chunks: chunks)) }

        func send(_ body: Refinery_Cluster_Envelope.OneOf_Body, from peer: String, version: UInt32 = Wire.protocolVersion) throws {
            var envelope = Refinery_Cluster_Envelope()
            envelope.protocolVersion = version
            envelope.body = body
            transport.deliver(Array(try envelope.serializedBytes() as Data), from: peer)
        }

        func hello(_ peer: String, slots: UInt32 = 2, held: [Lease] = [], answered: [Lease] = [], version: UInt32 = Wire.protocolVersion) throws {
            var hello = Refinery_Cluster_Hello()
            hello.workerID = peer
            hello.host = "test"
            hello.slots = slots
            hello.held = held.map(\.message)
            hello.answered = answered.map(\.message)
            try send(.hello(hello), from: peer, version: version)
        }

        func heartbeat(_ peer: String) throws { try send(.heartbeat(Refinery_Cluster_Heartbeat()), from: peer) }

        func answer(_ lease: Lease, from peer: String) throws {
            try send(.generateResult(LeaseTests.result(for: lease)), from: peer)
        }

        /// One turn of the coordinator's loop, after moving the clock.
        func turn(after seconds: Double = 0) throws {
            clock.advance(seconds)
            try coordinator.turn(stage)
        }

        /// What the coordinator sent `peer`, decoded as a worker decodes it.
        func received(_ peer: String) throws -> [CoordinatorMessage] {
            try transport.take(for: peer).map { bytes throws(WireRefusal) in try Wire.fromCoordinator(bytes) }
        }

        func leases(in messages: [CoordinatorMessage]) -> [Lease] {
            messages.compactMap { if case let .generateTask(lease, _, _) = $0 { return lease } else { return nil } }
        }

        func acks(in messages: [CoordinatorMessage]) -> [Lease] {
            messages.compactMap { if case let .resultAck(lease) = $0 { return lease } else { return nil } }
        }

        func holder(_ task: TaskID) -> String? { coordinator.lease(of: task)?.workerID }
    }

    static func result(for lease: Lease) -> Refinery_Cluster_GenerateResult {
        var result = Refinery_Cluster_GenerateResult()
        result.lease = lease.message
        if case let .chunk(id) = lease.task { result.chunkID = id }
        result.outcome = "done"
        result.pairs = (0..<5).map { i in
            var pair = Refinery_Cluster_Pair()
            pair.instruction = "Q\(i) of \(lease.task)"
            pair.answer = "A\(i)"
            return pair
        }
        var request = Refinery_Cluster_RequestRecord()
        request.status = "done"
        request.promptHash = "p\(lease.task)"
        request.promptTokens = 10
        request.completionTokens = 20
        request.cost = 0.001
        result.requests = [request]
        return result
    }

    @Test func aDeadWorkersLeasesGoBackToTheQueueAfterTheLivenessWindow() throws {
        let h = try Harness(chunks: 4)
        try h.hello("w1")
        try h.turn()
        #expect(h.leases(in: try h.received("w1")) == [Lease(task: .chunk(1), epoch: 1), Lease(task: .chunk(2), epoch: 1)])
        try h.hello("w2")
        try h.turn(after: 2)
        #expect(h.leases(in: try h.received("w2")).map(\.task) == [.chunk(3), .chunk(4)])
        #expect(h.holder(.chunk(1)) == "w1", "2 s of silence is within the 3 s window")
        try h.heartbeat("w2")
        try h.turn(after: 1.5)
        #expect(h.holder(.chunk(1)) == nil && h.holder(.chunk(2)) == nil, "3.5 s of silence: w1 is dead, its leases released")
        #expect(try h.store.leases().filter { $0.workerID == "w1" }.isEmpty)
        try h.answer(Lease(task: .chunk(3), epoch: 1), from: "w2")
        try h.turn()
        let next = h.leases(in: try h.received("w2"))
        #expect(next == [Lease(task: .chunk(1), epoch: 2)], "the released task is handed out next, under a new epoch")
        #expect(h.holder(.chunk(1)) == "w2")
    }

    @Test func aStaleEpochsAnswerIsKeptWhileItsChunkIsOpenAndDroppedAfter() throws {
        let h = try Harness(chunks: 1)
        try h.hello("w1", slots: 1)
        try h.turn()
        _ = try h.received("w1")
        try h.turn(after: 4)  // w1 silent: dead, chunk 1 released
        try h.hello("w2", slots: 1)
        try h.turn()
        #expect(h.leases(in: try h.received("w2")) == [Lease(task: .chunk(1), epoch: 2)])
        // w1 comes back and delivers the answer it was paid for under epoch 1: kept (DESIGN §4).
        try h.hello("w1", slots: 1, answered: [Lease(task: .chunk(1), epoch: 1)])
        try h.answer(Lease(task: .chunk(1), epoch: 1), from: "w1")
        try h.turn()
        #expect(h.acks(in: try h.received("w1")) == [Lease(task: .chunk(1), epoch: 1)])
        #expect(try h.stage.isComplete && (h.store.samples().count) == 5)
        // The current holder's answer arrives after: dropped (acknowledged, stored nowhere).
        try h.answer(Lease(task: .chunk(1), epoch: 2), from: "w2")
        try h.turn()
        #expect(h.acks(in: try h.received("w2")) == [Lease(task: .chunk(1), epoch: 2)])
        #expect(try h.store.samples().count == 5 && (h.store.totalUsage().requests) == 1)
    }

    @Test func aResultThatArrivesTwiceIsCommittedOnce() throws {
        let h = try Harness(chunks: 2)
        try h.hello("w1", slots: 1)
        try h.turn()
        let lease = Lease(task: .chunk(1), epoch: 1)
        #expect(h.leases(in: try h.received("w1")) == [lease])
        try h.answer(lease, from: "w1")
        try h.answer(lease, from: "w1")
        try h.turn()
        #expect(h.acks(in: try h.received("w1")) == [lease, lease], "both copies are acknowledged")
        #expect(try h.store.samples().count == 5 && (h.store.totalUsage().requests) == 1)
        #expect(try h.store.workers().first?.tasksDone == 1)
    }

    @Test func aRestartedCoordinatorWaitsTheGraceForAWorkerThatReclaimsItsLeases() throws {
        let store = try ProtocolTests.store(chunks: 3)
        let first = try Harness(store: store)
        try first.hello("w1", slots: 1)
        try first.turn()
        let held = Lease(task: .chunk(1), epoch: 1)
        #expect(first.leases(in: try first.received("w1")) == [held])
        // The coordinator dies; a new one opens the same state file.
        let second = try Harness(store: store, clock: ManualClock(start: first.clock.now + 60))
        try second.hello("w2", slots: 3)
        try second.turn()
        #expect(second.leases(in: try second.received("w2")).map(\.task) == [.chunk(2), .chunk(3)], "chunk 1 waits for its holder")
        // w1 reconnects 30 s later (its backoff), still working on chunk 1: it keeps it.
        try second.heartbeat("w2")
        try second.turn(after: 1)
        for _ in 0..<30 {
            try second.heartbeat("w2")
            try second.turn(after: 1)
        }
        try second.hello("w1", slots: 1, held: [held])
        try second.turn()
        #expect(second.holder(.chunk(1)) == "w1")
        for _ in 0..<20 {
            try second.heartbeat("w1")
            try second.heartbeat("w2")
            try second.turn(after: 1)
        }
        #expect(second.holder(.chunk(1)) == "w1", "past the grace: adopted leases do not expire with it")
        try second.answer(held, from: "w1")
        try second.turn()
        #expect(second.acks(in: try second.received("w1")) == [held])
        #expect(second.leases(in: try second.received("w2")).isEmpty, "chunk 1 was never handed to anyone else")
        #expect(try store.leases().first { $0.taskID == "chunk:1" }?.epoch == 1)
    }

    @Test func aReturningHolderThatNoLongerListsALeaseGetsItReleasedWithoutTheRestartGrace() throws {
        let store = try ProtocolTests.store(chunks: 2)
        let first = try Harness(store: store)
        try first.hello("w1", slots: 2)
        try first.turn()
        #expect(first.leases(in: try first.received("w1")).count == 2)
        // After the restart w1 comes back with only chunk 1 (the task of chunk 2 never reached it).
        let second = try Harness(store: store, clock: ManualClock(start: first.clock.now + 10))
        try second.hello("w1", slots: 1, held: [Lease(task: .chunk(1), epoch: 1)])
        try second.hello("w2", slots: 1)
        try second.turn()
        #expect(second.holder(.chunk(1)) == "w1" && second.holder(.chunk(2)) == "w1")
        for _ in 0..<4 {
            try second.heartbeat("w1")
            try second.heartbeat("w2")
            try second.turn(after: 1)
        }
        #expect(second.leases(in: try second.received("w2")) == [Lease(task: .chunk(2), epoch: 2)], "after the liveness window, not the 45 s grace")
    }

    @Test func aLeaseWhoseHolderNeverReturnsIsHandedOutAfterTheGrace() throws {
        let store = try ProtocolTests.store(chunks: 1)
        let first = try Harness(store: store)
        try first.hello("w1", slots: 1)
        try first.turn()
        _ = try first.received("w1")
        let second = try Harness(store: store, clock: ManualClock(start: first.clock.now + 60))
        try second.hello("w2", slots: 1)
        for _ in 0..<44 {
            try second.heartbeat("w2")
            try second.turn(after: 1)
        }
        #expect(second.leases(in: try second.received("w2")).isEmpty, "within the 45 s grace")
        for _ in 0..<2 {
            try second.heartbeat("w2")
            try second.turn(after: 1)
        }
        #expect(second.leases(in: try second.received("w2")) == [Lease(task: .chunk(1), epoch: 2)])
    }

    @Test func aWorkerOfAnotherProtocolVersionIsRefused() throws {
        let h = try Harness(chunks: 1)
        try h.hello("old", version: Wire.protocolVersion - 1)
        try h.turn()
        let replies = try h.received("old")
        guard case let .refused(reason)? = replies.first else { Issue.record("no refusal: \(replies)"); return }
        #expect(reason.contains("protocol version") && replies.count == 1)
        #expect(try h.store.workers().isEmpty && h.holder(.chunk(1)) == nil)
    }

    @Test func heartbeatsAndGracesOutsideTheirRangesAreRefusedAtStart() throws {
        let store = try ProtocolTests.store(chunks: 1)
        for (heartbeat, liveness, grace) in [(0.0, 3, 45.0), (-1, 3, 45), (.nan, 3, 45), (1e9, 3, 45), (1, 0, 45), (1, 3, -1), (1, 3, .infinity)] {
            var options = CoordinatorOptions(listen: "inproc://unused")
            options.heartbeatInterval = heartbeat
            options.liveness = liveness
            options.restartGrace = grace
            #expect(throws: ClusterError.self, "\(heartbeat) \(liveness) \(grace)") {
                _ = try Coordinator(store: store, options: options, transport: InMemoryTransport(), clock: ManualClock())
            }
        }
    }

    @Test func aWorkerOfAnotherVersionHoldingLeasesOfAnotherShapeIsStillToldWhy() throws {
        let h = try Harness(chunks: 1)
        var hello = Refinery_Cluster_Hello()
        hello.workerID = "old"
        var oldLease = Refinery_Cluster_Lease()  // protocol 1 named the task by a string, gone from this schema
        oldLease.epoch = 3
        hello.held = [oldLease]
        try h.send(.hello(hello), from: "old", version: Wire.protocolVersion - 1)
        try h.turn()
        let replies = try h.received("old")
        guard case let .refused(reason)? = replies.first else { Issue.record("no refusal: \(replies)"); return }
        #expect(reason.contains("protocol version"))
        // The same hello from a peer of this version is not readable: refused without a reply.
        try h.send(.hello(hello), from: "new")
        try h.turn()
        #expect(try h.received("new").isEmpty && h.coordinator.refusedMessages == 2)
    }

    @Test func resultsForLeasesNeverGrantedToTheSenderChangeNothing() throws {
        let h = try Harness(chunks: 2)
        try h.hello("w1", slots: 1)
        try h.hello("x-intruder", slots: 1)
        try h.turn()
        _ = try h.received("w1")
        let intruderLease = h.leases(in: try h.received("x-intruder"))
        #expect(intruderLease == [Lease(task: .chunk(2), epoch: 1)])
        // Someone else's lease, an epoch never granted, a chunk never leased.
        try h.answer(Lease(task: .chunk(1), epoch: 1), from: "x-intruder")
        try h.answer(Lease(task: .chunk(2), epoch: 7), from: "x-intruder")
        try h.answer(Lease(task: .chunk(99), epoch: 1), from: "x-intruder")
        try h.turn()
        #expect(h.coordinator.refusedMessages == 3)
        #expect(h.acks(in: try h.received("x-intruder")).isEmpty)
        #expect(try h.store.samples().isEmpty && h.holder(.chunk(1)) == "w1" && !h.stage.isComplete)
        #expect(try h.store.workers().allSatisfy { $0.tasksDone == 0 })
    }
}
