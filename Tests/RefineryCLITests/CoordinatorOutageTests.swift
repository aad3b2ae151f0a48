import CZeroMQ
import Foundation
import RefineryCluster
import RefineryCore
import RefineryModel
import RefineryStore
import Testing

/// A coordinator down for a minute (a reboot) while its workers keep running and reconnect on
/// their own backoff: no chunk is paid for twice, the results equal an uninterrupted run's, and
/// a restart during training does not wait out the restart grace.
@Suite(.serialized) struct CoordinatorOutageTests {
    typealias Background = ClusterTests.Background

    @Test func aCoordinatorDownForAMinuteMidGenerationPaysNoChunkTwice() async throws {
        try await offThePool(Self.outage)
    }

    static func outage() throws {
        let (dir, articles) = try ClusterTests.uninterruptedRun(articles: 40, train: true, steps: 20)
        let mock = try ClusterTests.Mock(latencyMs: 800)
        let config = try ClusterTests.config(dir: dir, name: "outage", articles: articles, mock: mock, train: true, steps: 20)
        let state = dir.appendingPathComponent("outage.db").path
        let endpoint = FreePort.endpoint()
        let workers = try (1...2).map { i in
            try Background(["worker", "--coordinator", endpoint, "--slots", "3", "--model", TrainCommandTests.llama, "--name", "outage-w\(i)"],
                           log: dir.appendingPathComponent("worker\(i).log"))
        }
        func store() -> RunStore? { try? RunStore(path: state, readOnly: true) }
        func done() -> Int { ((try? store()?.chunkCounts()[.done]) ?? nil) ?? 0 }
        func trainRows() -> Int { ((try? store()?.trainLog().count) ?? 0) }

        // 1. Generation: kill the coordinator with calls in flight, keep it down for 60 s.
        let first = try Background(["coordinator", "--config", config.path, "--listen", endpoint], log: dir.appendingPathComponent("c1.log"))
        var end = Date().addingTimeInterval(60)
        while done() < 6 && Date() < end { Thread.sleep(forTimeInterval: 0.05) }
        #expect(done() >= 6 && ((try? store()?.meta("stage")) ?? nil) == "generate", "killed inside generation")
        first.kill9()
        let doneAtKill = done()
        let totalChunks = ((try? store()?.chunkCounts().values.reduce(0, +)) ?? 0)
        Thread.sleep(forTimeInterval: 60)
        let second = try Background(["coordinator", "--config", config.path, "--listen", endpoint], log: dir.appendingPathComponent("c2.log"))

        // 2. Training: kill it again after two steps and restart at once; it must not wait out the grace.
        end = Date().addingTimeInterval(240)
        while trainRows() < 2 && Date() < end && second.status == nil { Thread.sleep(forTimeInterval: 0.05) }
        #expect(trainRows() >= 2, "\(second.output)")
        second.kill9()
        let rowsAtKill = trainRows()
        let restarted = Date()
        let third = try Background(["coordinator", "--config", config.path, "--listen", endpoint], log: dir.appendingPathComponent("c3.log"))
        end = Date().addingTimeInterval(120)
        while trainRows() <= rowsAtKill && Date() < end && third.status == nil { Thread.sleep(forTimeInterval: 0.05) }
        let resumedAfter = Date().timeIntervalSince(restarted)
        #expect(trainRows() > rowsAtKill)
        #expect(resumedAfter < 20, "training resumed after \(resumedAfter) s (the restart grace is 45 s)")

        #expect(third.wait(seconds: 180) && third.status == 0, "\(third.output)")
        for worker in workers { #expect(worker.wait(seconds: 20), "workers exit when the run is over") }
        #expect(doneAtKill + 6 <= totalChunks, "\(doneAtKill) of \(totalChunks) chunks were done when the coordinator went down")
        let stats = try mock.stats()
        #expect(stats["prompts_answered_more_than_once"]?.intValue == 0, "a chunk's prompt was answered twice: \(stats.compactText)")
        for suffix in ["-data.jsonl", "-data.test.jsonl", "-adapter/train_log.jsonl", "-adapter/adapter_model.safetensors"] {
            let a = ClusterTests.read(dir.appendingPathComponent("ref" + suffix).path), b = ClusterTests.read(dir.appendingPathComponent("outage" + suffix).path)
            #expect(a != nil && a == b, "\(suffix) differs from the uninterrupted run's")
        }
    }
}

/// A peer on the link that forges results for leases it never held, while a real run trains.
@Suite(.serialized) struct DisturbedRunTests {
    typealias Background = ClusterTests.Background

    @Test func aRunFloodedWithForgedResultsFinishesWithTheUndisturbedAdapter() async throws {
        try await offThePool(Self.flood)
    }

    static func flood() throws {
        let (dir, articles) = try ClusterTests.uninterruptedRun(articles: 12, train: true, steps: 10)
        let mock = try ClusterTests.Mock(latencyMs: 5)
        let config = try ClusterTests.config(dir: dir, name: "flooded", articles: articles, mock: mock, train: true, steps: 10)
        let endpoint = FreePort.endpoint()
        let coordinator = try Background(["coordinator", "--config", config.path, "--listen", endpoint], log: dir.appendingPathComponent("c.log"))
        let workers = try (1...2).map { i in
            try Background(["worker", "--coordinator", endpoint, "--model", TrainCommandTests.llama, "--name", "fw\(i)"],
                           log: dir.appendingPathComponent("w\(i).log"))
        }
        // The gradient size a forged result needs to be added (LoRA r=4 on every linear module).
        let llama = try LlamaModel(directory: URL(fileURLWithPath: TrainCommandTests.llama))
        let engine = try GradientEngine(model: llama, adapter: try LoRAAdapter.initialize(model: llama.config, config: LoRAConfig(rank: 4, alpha: 8), seed: 0),
                                        trainsBase: false)
        let nan = Data((0..<engine.gradientCount).flatMap { _ in withUnsafeBytes(of: Float.nan.bitPattern.littleEndian, Array.init) })
        let context = try ZMQContext()
        let hostile = try ZMQSocket(context: context, type: .dealer)
        try hostile.setOption(ZMQ_ROUTING_ID, string: "hostile")
        try hostile.connect(endpoint)
        func send(_ body: Refinery_Cluster_Envelope.OneOf_Body) throws {
            _ = try hostile.send([try Wire.encode(body)])
        }
        var hello = Refinery_Cluster_Hello()
        hello.workerID = "hostile"
        hello.host = "attacker"
        hello.slots = 1
        var forged = 0, roundsInTraining = 0
        let state = dir.appendingPathComponent("flooded.db").path
        while coordinator.status == nil {
            if ((try? RunStore(path: state, readOnly: true).meta("stage")) ?? nil) == "train" { roundsInTraining += 1 }
            try send(.hello(hello))
            _ = try hostile.send([[0x0A, 0xFF, 0xFF]])  // and some garbage
            for step in 0..<10 {
                for micro in 0..<2 {
                    for epoch in 1...2 {
                        var result = Refinery_Cluster_GradientResult()
                        result.lease = Lease(task: .microBatch(step: step, index: micro), epoch: Int64(epoch)).message
                        result.parameterVersion = UInt64(step)
                        result.lossSum = .nan
                        result.tokens = 1
                        result.gradient = nan
                        try send(.gradientResult(result))
                        forged += 1
                    }
                }
            }
            while (try? hostile.receive()) != nil {}
            Thread.sleep(forTimeInterval: 0.1)
        }
        hostile.close()
        #expect(roundsInTraining >= 3, "\(roundsInTraining) rounds of forgeries while the run trained")
        #expect(coordinator.status == 0, "\(coordinator.output)")
        #expect(coordinator.output.contains("refused a result"), "the forgeries were seen and refused")
        for worker in workers { #expect(worker.wait(seconds: 20)) }
        for suffix in ["-data.jsonl", "-adapter/train_log.jsonl", "-adapter/adapter_model.safetensors"] {
            let a = ClusterTests.read(dir.appendingPathComponent("ref" + suffix).path), b = ClusterTests.read(dir.appendingPathComponent("flooded" + suffix).path)
            #expect(a != nil && a == b, "\(suffix) differs from the undisturbed run's")
        }
    }
}
