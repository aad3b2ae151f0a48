import Foundation
import RefineryCore
import RefineryStore
import Testing

/// A coordinator down for a minute (a reboot) while its workers keep running and reconnect on
/// their own backoff: no chunk is paid for twice, the results equal an uninterrupted run's, and
/// a restart during training does not wait out the restart grace.
@Suite(.serialized) struct CoordinatorOutageTests {
    typealias Background = ClusterTests.Background

    @Test func aCoordinatorDownForAMinuteMidGenerationPaysNoChunkTwice() throws {
        let (dir, articles) = try ClusterTests.uninterruptedRun(articles: 30, train: true, steps: 8)
        let mock = try ClusterTests.Mock(latencyMs: 600)
        let config = try ClusterTests.config(dir: dir, name: "outage", articles: articles, mock: mock, train: true, steps: 8)
        let state = dir.appendingPathComponent("outage.db").path
        let endpoint = "tcp://127.0.0.1:\(Int.random(in: 20000...40000))"
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
