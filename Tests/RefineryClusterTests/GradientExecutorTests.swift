import Foundation
@testable import RefineryCluster
import RefineryModel
import Testing

/// A worker's gradient executor on a real checkpoint: a task the model cannot take comes back
/// as an error with the reason, never as a gradient and never as a crash.
@Suite struct GradientExecutorTests {
    static let model = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("RefineryModelTests/Fixtures/llama-gqa").path

    final class Results: @unchecked Sendable {
        private let lock = NSLock()
        private var items: [Refinery_Cluster_GradientResult] = []
        func add(_ body: Refinery_Cluster_Envelope.OneOf_Body) {
            guard case let .gradientResult(result) = body else { return }
            lock.lock(); items.append(result); lock.unlock()
        }
        func wait(count: Int) -> [Refinery_Cluster_GradientResult] {
            let end = Date().addingTimeInterval(60)
            while Date() < end {
                lock.lock()
                let current = items
                lock.unlock()
                if current.count >= count { return current }
                Thread.sleep(forTimeInterval: 0.01)
            }
            return []
        }
    }

    @Test func tasksOutsideTheModelComeBackAsErrorsAndAGoodOneAsAGradient() throws {
        let results = Results()
        let executor = try GradientExecutor(modelDirectory: Self.model, deliver: { results.add($0) })
        let settings = TrainingWireSettings(method: .lora, lora: LoRAConfig(rank: 4, alpha: 8), gradientCheckpointing: false, blasThreads: 1)
        try executor.configure(settings)
        let llama = try LlamaModel(directory: URL(fileURLWithPath: Self.model))
        let config = llama.config
        let engine = try GradientEngine(model: llama,
                                        adapter: try LoRAAdapter.initialize(model: config, config: settings.lora, seed: 0), trainsBase: false)
        executor.enqueue(version: 0, values: engine.parameterBytes())
        func task(_ ids: [Int], positions: [Int]? = nil, keyStart: [Int]? = nil, seeds: Int = 1) -> GradientTaskSpec {
            GradientTaskSpec(parameterVersion: 0, step: 0, microBatch: 0, lossOnly: false,
                             sequences: [TrainingSequenceSpec(ids: ids, trained: ids.indices.map { $0 > 0 }, positions: positions, keyStart: keyStart)],
                             dropoutSeeds: Array(repeating: 7, count: seeds))
        }
        let lease = Lease(task: .microBatch(step: 0, index: 0), epoch: 1)
        executor.enqueue(lease: lease, task: task([1, config.vocabSize, 2]))
        executor.enqueue(lease: lease, task: task([1, 2, 3], positions: [0, GradientEngine.maxPosition, 1]))
        executor.enqueue(lease: lease, task: task([1, 2, 3], keyStart: [0, 1, 0]))
        executor.enqueue(lease: lease, task: task([1, 2, 3], seeds: 0))
        executor.enqueue(lease: lease, task: task([1, 2, 3]))
        let all = results.wait(count: 5)
        #expect(all.count == 5)
        guard all.count == 5 else { return }
        for (index, reason) in ["outside the vocabulary", "outside 0..<", "first key", "dropout seeds"].enumerated() {
            #expect(all[index].error.contains(reason) && all[index].gradient.isEmpty, "\(index): \(all[index].error)")
        }
        #expect(all[4].error.isEmpty && all[4].gradient.count == engine.gradientCount * 4 && all[4].lossSum.isFinite && all[4].tokens == 2)
    }
}
