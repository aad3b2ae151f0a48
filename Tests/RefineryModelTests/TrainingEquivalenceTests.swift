import Foundation
import Testing
@testable import RefineryModel
import RefineryTensor
import RefineryText

/// Ways of computing the same optimizer step must agree (DESIGN §3.3, §3.4, §3.9).
@Suite struct TrainingEquivalenceTests {
    static let name = "llama-gqa"

    static func encoded() throws -> [EncodedSample] {
        let chat = try ChatTokenizer(directory: ModelFixtures.directory(name))
        let path = TrainingParityTests.trainingDirectory(name).appendingPathComponent("train.jsonl").path
        return try DatasetReader().readAll(path: path).map { try SampleEncoder(chat: chat).encode($0) }
    }

    static func freshAdapter(_ model: LlamaModel) throws -> LoRAAdapter {
        try LoRAAdapter.load(directory: TrainingParityTests.trainingDirectory(name).appendingPathComponent("init_adapter"), model: model.config)
    }

    static func maxRelative(_ a: [TrainableParameter], _ b: [TrainableParameter], gradient: Bool) -> Float {
        var worst: Float = 0
        for (x, y) in zip(a, b) {
            let tx = gradient ? x.gradient : x.value, ty = gradient ? y.gradient : y.value
            worst = max(worst, TrainingParityTests.relativeError(tx, ty))
        }
        return worst
    }

    @Test func packedEqualsUnpacked() throws {
        let samples = try Self.encoded()
        let model = try LlamaModel(directory: ModelFixtures.directory(Self.name))
        let plain = try GradientEngine(model: model, adapter: try Self.freshAdapter(model), trainsBase: false)
        let packed = try GradientEngine(model: model, adapter: try Self.freshAdapter(model), trainsBase: false)
        let sequences = samples.map { TrainingSequence(ids: $0.ids, trained: $0.trained) }
        let total = sequences.map(\.labelCount).reduce(0, +)
        var plainLoss = 0.0
        for sequence in sequences { plainLoss += try plain.accumulate(sequence, scale: 1 / Float(total)).lossSum }
        let schedule = DataSchedule(samples: samples, microBatchSize: 1, accumulation: 1, shuffle: false, seed: 0, packingLength: 4096)
        let rows = schedule.packedRows(epoch: 0, length: 4096)
        #expect(rows.count == 1 && rows[0].ids.count == samples.map(\.ids.count).reduce(0, +))
        #expect(rows[0].labelCount == total)
        let (packedLoss, packedTokens) = try packed.accumulate(rows[0], scale: 1 / Float(total))
        #expect(packedTokens == total)
        #expect(abs(packedLoss - plainLoss) / plainLoss < 1e-6)
        #expect(Self.maxRelative(plain.parameters, packed.parameters, gradient: true) < 1e-4)
    }

    @Test func microBatchAndAccumulationSplitsAgree() throws {
        let samples = try Self.encoded()
        #expect(Set(samples.map(\.ids.count)).count >= 4, "samples of very different lengths")
        func run(micro: Int, accumulation: Int) throws -> ([StepRecord], [TrainableParameter]) {
            let model = try LlamaModel(directory: ModelFixtures.directory(Self.name))
            var options = TrainingOptions()
            options.lora = LoRAConfig(rank: 8, alpha: 16)
            options.learningRate = 1e-3
            options.microBatchSize = micro
            options.gradientAccumulation = accumulation
            options.shuffle = false
            options.steps = 3
            let trainer = try Trainer(model: model, modelDirectory: ModelFixtures.directory(Self.name), options: options,
                                      adapter: try Self.freshAdapter(model), train: samples, eval: [])
            let records = try (0..<3).map { _ in try trainer.runStep() }
            return (records, trainer.engine.parameters)
        }
        let (a, pa) = try run(micro: 4, accumulation: 1)
        let (b, pb) = try run(micro: 1, accumulation: 4)
        let (c, pc) = try run(micro: 2, accumulation: 2)
        for (x, y) in [(a, b), (a, c)] {
            for (r, s) in zip(x, y) {
                #expect(r.tokens == s.tokens)
                #expect(abs(r.loss - s.loss) / r.loss < 1e-6)
                #expect(abs(r.gradNorm - s.gradNorm) / r.gradNorm < 1e-5)
            }
        }
        #expect(Self.maxRelative(pa, pb, gradient: false) < 1e-5)
        #expect(Self.maxRelative(pa, pc, gradient: false) < 1e-5)
    }

    @Test(arguments: ["lora", "full"])
    func gradientCheckpointingChangesNothing(method: String) throws {
        let samples = try Self.encoded()
        func gradients(checkpointing: Bool) throws -> [TrainableParameter] {
            let model = try LlamaModel(directory: ModelFixtures.directory(Self.name))
            let engine = try GradientEngine(model: model, adapter: method == "lora" ? try Self.freshAdapter(model) : nil,
                                            trainsBase: method == "full", checkpointing: checkpointing)
            for sample in samples.prefix(2) {
                try engine.accumulate(TrainingSequence(ids: sample.ids, trained: sample.trained), scale: 0.01)
            }
            return engine.parameters
        }
        #expect(Self.maxRelative(try gradients(checkpointing: false), try gradients(checkpointing: true), gradient: true) == 0)
    }

    /// LoRA with float32 moments; full fine-tuning with 8-bit moments (the embedding, MLP and query
    /// projections of this model hold ≥ 4,096 values, the rest keep float32 moments).
    @Test(arguments: [(TrainingMethod.lora, OptimizerChoice.adamW), (.full, .adamW8bit)])
    func resumeEqualsUninterrupted(method: TrainingMethod, optimizer: OptimizerChoice) throws {
        let samples = try Self.encoded()
        func trainer() throws -> Trainer {
            let model = try LlamaModel(directory: ModelFixtures.directory(Self.name))
            var options = TrainingOptions()
            options.method = method
            options.optimizer = optimizer
            options.lora = LoRAConfig(rank: 4, alpha: 8, dropout: 0.1)
            options.learningRate = 1e-3
            options.warmupSteps = 2
            options.steps = 6
            options.gradientAccumulation = 2
            options.checkpointEvery = 3
            options.evalEvery = 2
            options.shuffle = true
            options.seed = 5
            return try Trainer(model: model, modelDirectory: ModelFixtures.directory(Self.name), options: options,
                               adapter: try LoRAAdapter.initialize(model: model.config, config: options.lora, seed: options.seed),
                               train: samples, eval: Array(samples.prefix(2)))
        }
        let whole = try ModelFixtures.temporaryDirectory()
        let uninterrupted = try trainer()
        try Self.run(uninterrupted, output: whole, resume: false)
        #expect(uninterrupted.optimizer.eightBitMoments.isEmpty == (optimizer == .adamW))
        // Interrupted after step 4 (its log row written, the checkpoint of step 3 the newest).
        let parts = try ModelFixtures.temporaryDirectory()
        #expect(throws: Interruption.self) {
            try Self.run(trainer(), output: parts, resume: false) { progress in
                if progress.record.step == 4 { throw Interruption() }
            }
        }
        #expect(FileManager.default.fileExists(atPath: parts.appendingPathComponent("checkpoints/step-000003/state.json").path))
        let result = method == .lora ? "adapter_model.safetensors" : "model.safetensors"
        #expect(!FileManager.default.fileExists(atPath: parts.appendingPathComponent(result).path))
        let partial = try String(contentsOf: parts.appendingPathComponent("train_log.jsonl"), encoding: .utf8)
        #expect(partial.contains("\"step\":4"))
        try Self.run(trainer(), output: parts, resume: true)
        let written = try FileManager.default.contentsOfDirectory(atPath: whole.path).filter { $0 != "checkpoints" }.sorted()
        #expect(written.contains(result), "\(written)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: parts.path).filter { $0 != "checkpoints" }.sorted() == written)
        for name in written {
            let a = try Data(contentsOf: whole.appendingPathComponent(name)), b = try Data(contentsOf: parts.appendingPathComponent(name))
            #expect(a == b, "\(name) differs after the resume")
        }
        let log = try String(contentsOf: whole.appendingPathComponent("train_log.jsonl"), encoding: .utf8)
        #expect(log.split(separator: "\n").count == 6 + 3)
    }

    /// The cluster's checkpoint (named byte blobs in the state file) restores 8-bit moments exactly:
    /// a trainer restored after step 2 continues with the same bits as one that never stopped.
    @Test func stateBlobsCarryEightBitMomentsAcrossARestart() throws {
        let samples = try Self.encoded()
        func trainer() throws -> Trainer {
            let model = try LlamaModel(directory: ModelFixtures.directory(Self.name))
            var options = TrainingOptions()
            options.method = .full
            options.optimizer = .adamW8bit
            options.learningRate = 1e-3
            options.steps = 4
            return try Trainer(model: model, modelDirectory: ModelFixtures.directory(Self.name), options: options, adapter: nil,
                               train: samples, eval: [])
        }
        let whole = try trainer()
        for _ in 0..<2 { _ = try whole.runStep() }
        let saved = Dictionary(uniqueKeysWithValues: whole.stateTensors())
        #expect(saved.keys.contains { $0.hasPrefix("m8/") } && saved.keys.contains { $0.hasPrefix("m/") })
        for _ in 0..<2 { _ = try whole.runStep() }
        let restarted = try trainer()
        try restarted.restoreState(step: 2, optimizerSteps: 2, tensors: saved)
        for _ in 0..<2 { _ = try restarted.runStep() }
        #expect(restarted.stateTensors().map(\.1) == whole.stateTensors().map(\.1))
        // A state saved with float32 moments is refused by an 8-bit run, naming the flag.
        var float32 = saved.filter { !$0.key.hasPrefix("m8") && !$0.key.hasPrefix("v8") }
        float32["m/model.embed_tokens.weight"] = [UInt8](repeating: 0, count: 700 * 64 * 4)
        #expect(throws: ModelError.self) { try trainer().restoreState(step: 2, optimizerSteps: 2, tensors: float32) }
    }

    /// The one-process training loop as `refinery train` runs it: checkpoint folders and the log
    /// file in `output`.
    static func run(_ trainer: Trainer, output: URL, resume: Bool, progress: (TrainingProgress) throws -> Void = { _ in }) throws {
        let driver = TrainingDriver(trainer: trainer, checkpoints: FolderCheckpointStore(output: output),
                                    log: FileTrainLog(url: output.appendingPathComponent("train_log.jsonl")), output: output, recoveryHint: "")
        try driver.runHere(resume: resume, progress: progress)
    }

    /// Stands for a kill after step 4.
    struct Interruption: Error {}

    /// LoRA dropout gradients against central finite differences (same masks both ways).
    @Test func dropoutGradientsMatchFiniteDifferences() throws {
        let samples = try Self.encoded()
        let model = try LlamaModel(directory: ModelFixtures.directory(Self.name))
        let base = try Self.freshAdapter(model)
        let adapter = LoRAAdapter(config: LoRAConfig(rank: 8, alpha: 16, dropout: 0.3, targets: .allLinear), pairs: base.pairs)
        let engine = try GradientEngine(model: model, adapter: adapter, trainsBase: false)
        let sequence = TrainingSequence(ids: samples[0].ids, trained: Array(repeating: true, count: samples[0].ids.count))
        engine.dropoutSeed = 99
        try engine.accumulate(sequence, scale: 1)
        let parameter = try #require(engine.parameters.first { $0.name.contains("layers.0.self_attn.q_proj.lora_A") })
        for index in [0, 17, 100] {
            let original = parameter.value.pointer[index]
            let h: Float = 1e-2
            func lossAt(_ value: Float) throws -> Double {
                parameter.value.pointer[index] = value
                engine.dropoutSeed = 99
                let scratch = try GradientEngine(model: model, adapter: adapter, trainsBase: false)
                scratch.dropoutSeed = 99
                return try scratch.accumulate(sequence, scale: 0).lossSum
            }
            let numeric = (try lossAt(original + h) - lossAt(original - h)) / Double(2 * h)
            parameter.value.pointer[index] = original
            let analytic = Double(parameter.gradient.pointer[index])
            #expect(abs(numeric - analytic) <= 2e-2 * max(1, abs(analytic)), "index \(index): numeric \(numeric) analytic \(analytic)")
        }
    }
}
