import Foundation
import RefineryCore
import Testing
@testable import RefineryModel
import RefineryTensor
import RefineryText

/// Training steps against PyTorch + PEFT (scripts/make_training_fixtures.py), DESIGN §3.
@Suite struct TrainingParityTests {
    static let models = ["llama-gqa", "qwen2-tied"]

    static func trainingDirectory(_ name: String) -> URL { ModelFixtures.directory(name).appendingPathComponent("training") }

    static func sequences(_ name: String) throws -> [TrainingSequence] {
        let chat = try ChatTokenizer(directory: ModelFixtures.directory(name))
        let samples = try DatasetReader().readAll(path: trainingDirectory(name).appendingPathComponent("train.jsonl").path)
        return try samples.map { sample in
            let encoded = try SampleEncoder(chat: chat).encode(sample)
            return TrainingSequence(ids: encoded.ids, trained: encoded.trained)
        }
    }

    /// Runs `steps` optimizer steps the way the reference does and returns the log.
    static func run(engine: GradientEngine, sequences: [TrainingSequence], steps: Int, accumulation: Int) throws -> [(Double, Double, Double, Int)] {
        let optimizer = AdamW(weightDecay: 0.01)
        var log: [(Double, Double, Double, Int)] = []
        for step in 0..<steps {
            let batch = (0..<accumulation).map { sequences[(step * accumulation + $0) % sequences.count] }
            let count = batch.map(\.labelCount).reduce(0, +)
            engine.zeroGradients()
            var total = 0.0
            for sequence in batch { total += try engine.accumulate(sequence, scale: 1 / Float(count)).lossSum }
            let norm = GradientClipping.clip(engine.parameters, maxNorm: 1.0)
            let lr = LearningRateSchedule.linear.rate(base: 1e-3, step: step, warmup: 2, total: steps)
            optimizer.step(engine.parameters, learningRate: lr)
            log.append((total / Double(count), norm, lr, count))
        }
        return log
    }

    static func checkLog(_ got: [(Double, Double, Double, Int)], expected: JSONValue?, label: String) throws {
        let rows = try #require(expected?.arrayValue)
        #expect(rows.count == got.count)
        for (row, step) in zip(rows, got) {
            let loss = try #require(row["loss"]?.doubleValue), norm = try #require(row["grad_norm"]?.doubleValue)
            #expect(step.3 == row["tokens"]?.intValue, "\(label) step \(row["step"]?.intValue ?? 0) tokens")
            #expect(abs(step.0 - loss) / loss <= 1e-4, "\(label) step \(row["step"]?.intValue ?? 0): loss \(step.0) vs \(loss)")
            #expect(abs(step.1 - norm) / norm <= 1e-3, "\(label) step \(row["step"]?.intValue ?? 0): grad_norm \(step.1) vs \(norm)")
            #expect(abs(step.2 - (row["lr"]?.doubleValue ?? -1)) <= 1e-12)
        }
    }

    /// max |a − b| / max |b| over a tensor.
    static func relativeError(_ a: Tensor, _ b: Tensor) -> Float {
        var diff: Float = 0, scale: Float = 0
        for i in 0..<b.count {
            diff = max(diff, abs(a.pointer[i] - b.pointer[i]))
            scale = max(scale, abs(b.pointer[i]))
        }
        return diff / max(scale, 1e-12)
    }

    @Test(arguments: models)
    func loraStepsMatchPEFT(name: String) throws {
        let model = try LlamaModel(directory: ModelFixtures.directory(name))
        let adapter = try LoRAAdapter.load(directory: Self.trainingDirectory(name).appendingPathComponent("init_adapter"), model: model.config)
        #expect(adapter.pairs.count == 14)
        let engine = try GradientEngine(model: model, adapter: adapter, trainsBase: false)
        let expected = try JSONValue.parse(bytes: Array(try Data(contentsOf: Self.trainingDirectory(name).appendingPathComponent("lora_expected.json"))))
        let log = try Self.run(engine: engine, sequences: try Self.sequences(name), steps: 6, accumulation: 2)
        try Self.checkLog(log, expected: expected["log"], label: "\(name) LoRA")
        let final = try LoRAAdapter.load(directory: Self.trainingDirectory(name).appendingPathComponent("lora_final"), model: model.config)
        for (module, pair) in final.pairs {
            let mine = try #require(adapter.pairs[module])
            #expect(Self.relativeError(mine.a, pair.a) <= 1e-4, "\(name) \(module) lora_A")
            #expect(Self.relativeError(mine.b, pair.b) <= 1e-4, "\(name) \(module) lora_B")
        }
    }

    @Test(arguments: models)
    func fullFineTuningStepsMatchPyTorch(name: String) throws {
        let model = try LlamaModel(directory: ModelFixtures.directory(name))
        let engine = try GradientEngine(model: model, adapter: nil, trainsBase: true)
        let expected = try JSONValue.parse(bytes: Array(try Data(contentsOf: Self.trainingDirectory(name).appendingPathComponent("full_expected.json"))))
        let log = try Self.run(engine: engine, sequences: try Self.sequences(name), steps: 3, accumulation: 2)
        try Self.checkLog(log, expected: expected["log"], label: "\(name) full")
        let reference = try SafetensorsFile(path: Self.trainingDirectory(name).appendingPathComponent("full_final.safetensors").path)
        #expect(Set(reference.names) == Set(engine.parameters.map(\.name)))
        for parameter in engine.parameters {
            let want = try reference.tensor(parameter.name)
            #expect(Self.relativeError(parameter.value, want) <= 1e-4, "\(name) \(parameter.name)")
        }
    }
}
