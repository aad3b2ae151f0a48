import Foundation
@testable import RefineryCluster
import RefineryStore
import Testing

/// The run-wide limits the coordinator grants: requests and tokens per minute, the dollar budget.
@Suite struct GenerationStageTests {
    static var worker: ConnectedWorker { ConnectedWorker(id: "w", routingID: Array("w".utf8), host: "h", slots: 4, modelHash: "", now: 0) }

    @Test func requestsPerMinuteLimitTheTasksGrantedAcrossAllWorkers() throws {
        let stage = try GenerationStage(store: try ProtocolTests.store(chunks: 5), requestsPerMinute: 2)
        #expect(try stage.takeTask(for: Self.worker, now: 100) == .chunk(1))
        #expect(try stage.takeTask(for: Self.worker, now: 100) == .chunk(2))
        #expect(try stage.takeTask(for: Self.worker, now: 130) == nil, "the third call waits for the minute to pass")
        #expect(try stage.takeTask(for: Self.worker, now: 160.5) == .chunk(3))
    }

    @Test func tokensPerMinuteCountTheEstimatedTokensOfEachCall() throws {
        let stage = try GenerationStage(store: try ProtocolTests.store(chunks: 5), tokensPerMinute: 250, tokenEstimate: { _ in 100 })
        #expect(try stage.takeTask(for: Self.worker, now: 0) != nil)
        #expect(try stage.takeTask(for: Self.worker, now: 1) != nil)
        #expect(try stage.takeTask(for: Self.worker, now: 2) == nil, "300 tokens would pass the 250 per minute")
        #expect(try stage.takeTask(for: Self.worker, now: 61) != nil)
    }

    @Test func aRequeuedTaskIsHandedOutNextAndOnlyOnce() throws {
        let stage = try GenerationStage(store: try ProtocolTests.store(chunks: 3))
        let first = try stage.takeTask(for: Self.worker, now: 0)
        #expect(first == .chunk(1))
        stage.requeue(.chunk(1))
        stage.requeue(.chunk(1))
        #expect(try stage.takeTask(for: Self.worker, now: 0) == .chunk(1))
        #expect(try stage.takeTask(for: Self.worker, now: 0) == .chunk(2))
        #expect(try stage.takeTask(for: Self.worker, now: 0) == .chunk(3))
        #expect(try stage.takeTask(for: Self.worker, now: 0) == nil)
    }

    @Test func aStaleResultForAnOpenChunkIsStoredOnceAndALaterOneIsDropped() throws {
        let store = try ProtocolTests.store(chunks: 1)
        let stage = try GenerationStage(store: store)
        _ = try stage.takeTask(for: Self.worker, now: 0)
        let result = LeaseTests.result(for: Lease(task: .chunk(1), epoch: 1))
        // Epoch 1 answers after the task was leased again under epoch 2: the answer is kept.
        guard case .stored = try stage.accept(.generation(result), lease: Lease(task: .chunk(1), epoch: 1), isCurrent: false, from: Self.worker) else {
            Issue.record("a valid answer for an open chunk was not stored"); return
        }
        guard case .dropped = try stage.accept(.generation(result), lease: Lease(task: .chunk(1), epoch: 2), isCurrent: true, from: Self.worker) else {
            Issue.record("a second answer was not dropped"); return
        }
        #expect(try store.samples().count == 5)
        #expect(try store.totalUsage().requests == 1)
        #expect(stage.isComplete)
    }
}
