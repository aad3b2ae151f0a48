import Foundation
@testable import RefineryCluster
import RefineryModel
import RefineryStore
import RefineryText
import Testing

/// The training stage's leases on the in-memory transport with a manual clock: a stale epoch's
/// gradient is dropped and counted nowhere, a gradient of the wrong size is dropped, answered
/// tasks free their lease in the state file (so a restart does not wait for them).
@Suite struct TrainingLeaseTests {
    static func stage(store: RunStore, output: URL) throws -> TrainingStage {
        let model = try LlamaModel(directory: URL(fileURLWithPath: GradientExecutorTests.model))
        var options = TrainingOptions()
        options.lora = LoRAConfig(rank: 4, alpha: 8)
        options.steps = 3
        options.microBatchSize = 1
        options.gradientAccumulation = 2
        options.shuffle = false
        let samples = (0..<4).map { i in EncodedSample(ids: [1, 5 + i, 9, 13 + i, 2], trained: [false, false, true, true, true]) }
        let trainer = try Trainer(model: model, modelDirectory: URL(fileURLWithPath: GradientExecutorTests.model), options: options,
                                  adapter: try LoRAAdapter.initialize(model: model.config, config: options.lora, seed: 1), train: samples, eval: [])
        let driver = TrainingDriver(trainer: trainer, checkpoints: FolderCheckpointStore(output: output),
                                    log: FileTrainLog(url: output.appendingPathComponent("train_log.jsonl")), output: output, recoveryHint: "")
        return try TrainingStage(driver: driver, store: store)
    }

    static func gradientTasks(_ messages: [CoordinatorMessage]) -> [(Lease, GradientTaskSpec)] {
        messages.compactMap { if case let .gradientTask(lease, task) = $0 { return (lease, task) } else { return nil } }
    }

    static func result(_ lease: Lease, version: UInt64, floats: Int) -> Refinery_Cluster_GradientResult {
        var result = Refinery_Cluster_GradientResult()
        result.lease = lease.message
        result.parameterVersion = version
        result.lossSum = 1
        result.tokens = 3
        result.gradient = Data(count: floats * 4)
        return result
    }

    @Test func staleAndMisshapenGradientsAreDroppedAndAnsweredTasksFreeTheirLease() throws {
        let store = try ProtocolTests.store(chunks: 0)
        let output = try ProtocolTests.temporary()
        let transport = InMemoryTransport(), clock = ManualClock()
        var options = CoordinatorOptions(listen: "inproc://unused")
        options.modelHash = "m"
        let coordinator = try Coordinator(store: store, options: options, transport: transport, clock: clock)
        let stage = try Self.stage(store: store, output: output)
        let floats = stage.trainer.accumulator.count
        try coordinator.begin(stage)
        func send(_ body: Refinery_Cluster_Envelope.OneOf_Body, from peer: String) throws { transport.deliver(try Wire.encode(body), from: peer) }
        var hello = Refinery_Cluster_Hello()
        hello.workerID = "w1"
        hello.slots = 1
        hello.modelHash = "m"
        try send(.hello(hello), from: "w1")
        try coordinator.turn(stage)
        let first = Self.gradientTasks(try transport.take(for: "w1").map { bytes throws(WireRefusal) in try Wire.fromCoordinator(bytes) })
        #expect(first.map(\.0) == [Lease(task: .microBatch(step: 0, index: 0), epoch: 1), Lease(task: .microBatch(step: 0, index: 1), epoch: 1)])
        // w1 goes silent: its leases are released and handed to w2 under epoch 2.
        clock.advance(4)
        try coordinator.turn(stage)
        hello.workerID = "w2"
        try send(.hello(hello), from: "w2")
        try coordinator.turn(stage)
        let second = Self.gradientTasks(try transport.take(for: "w2").map { bytes throws(WireRefusal) in try Wire.fromCoordinator(bytes) })
        #expect(second.map(\.0.epoch) == [2, 2])
        // w1's answers under epoch 1 arrive late: dropped, counted for nobody.
        hello.workerID = "w1"
        try send(.hello(hello), from: "w1")
        for (lease, _) in first { try send(.gradientResult(Self.result(lease, version: 0, floats: floats)), from: "w1") }
        // w2 answers one task with a gradient of the wrong size: dropped, the task handed out again.
        try send(.gradientResult(Self.result(second[0].0, version: 0, floats: floats - 1)), from: "w2")
        try coordinator.turn(stage)
        #expect(try store.workers().allSatisfy { $0.tasksDone == 0 }, "nothing stored, nothing counted")
        #expect(stage.trainer.step == 0)
        // w2's good answer is stored, counted, and frees its lease in the state file.
        try send(.gradientResult(Self.result(second[1].0, version: 0, floats: floats)), from: "w2")
        try coordinator.turn(stage)
        #expect(try store.workers().first { $0.id == "w2" }?.tasksDone == 1)
        #expect(try store.leases().first { $0.taskID == second[1].0.task.key }?.workerID == nil)
    }
}
