import Foundation
import Testing
@testable import RefineryModel
import RefineryTensor
import RefineryText

/// bfloat16 runs (issue 11): the frozen base in bf16, products with bf16 operands and float32
/// sums, against transformers loading the same fixtures in bf16 (scripts/make_bf16_fixtures.py).
@Suite struct BFloat16Tests {
    static func encodedEval(_ name: String) throws -> [EncodedSample] {
        let directory = ModelFixtures.directory(name)
        let chat = try ChatTokenizer(directory: directory)
        let samples = try DatasetReader().readAll(path: directory.appendingPathComponent("eval.jsonl").path)
        return try samples.map { try SampleEncoder(chat: chat).encode($0) }
    }

    @Test(arguments: ModelFixtures.names)
    func evalLossMatchesTransformersInBFloat16(name: String) throws {
        let directory = ModelFixtures.directory(name)
        let data = try Data(contentsOf: directory.appendingPathComponent("expected_bf16.json"))
        let expected = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let want = try #require(expected["eval_loss_bf16"] as? Double)
        let model = try LlamaModel(directory: directory, dtype: .bfloat16)
        #expect(model.dtype == .bfloat16)
        #expect(model.matrices.allSatisfy { $0.float == nil && $0.bfloat16 != nil }, "the frozen base is held in bf16 only")
        let encoded = try Self.encodedEval(name)
        let result = try Evaluator(model: model).evaluate(encoded)
        #expect(result.tokens == expected["tokens"] as? Int)
        let relative = abs(result.loss - want) / want
        #expect(relative <= 0.005, "\(name): bf16 loss \(result.loss) vs transformers bf16 \(want), relative \(relative)")
        // The products really ran in bf16: the float32 loss differs.
        let float32 = try Evaluator(model: try LlamaModel(directory: directory)).evaluate(encoded)
        #expect(float32.loss != result.loss, "\(name): bf16 and float32 gave the same loss, so bf16 did not run")
    }

    @Test func autoFollowsTheCheckpointAsTransformersDoes() throws {
        func auto(_ folder: URL) throws -> ComputeDType {
            DTypeChoice.auto.resolve(config: try ModelConfig.load(directory: folder), checkpoint: try Checkpoint(directory: folder))
        }
        func resolved(_ name: String) throws -> ComputeDType { try auto(ModelFixtures.directory(name)) }
        #expect(try resolved("llama-gqa") == .float32)    // "dtype": "float32"
        #expect(try resolved("qwen2-tied") == .bfloat16)  // "dtype": "bfloat16"
        #expect(try resolved("mistral-sp") == .float32)   // "dtype": "float16": no fp16 products, float32 keeps its bits
        // No dtype in config.json: the tensors' own dtype decides.
        let folder = try ModelFixtures.temporaryDirectory()
        let source = ModelFixtures.directory("qwen2-tied")
        for file in try FileManager.default.contentsOfDirectory(atPath: source.path) {
            try FileManager.default.copyItem(at: source.appendingPathComponent(file), to: folder.appendingPathComponent(file))
        }
        let configURL = folder.appendingPathComponent("config.json")
        var config = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: configURL)) as? [String: Any])
        config["dtype"] = nil
        config["torch_dtype"] = nil
        try JSONSerialization.data(withJSONObject: config).write(to: configURL)
        #expect(try auto(folder) == .bfloat16)
        // An older config's torch_dtype is read when dtype is absent.
        config["torch_dtype"] = "float32"
        try JSONSerialization.data(withJSONObject: config).write(to: configURL)
        #expect(try auto(folder) == .float32)
        #expect(throws: ModelError.self) { try DTypeChoice(parsing: "half", source: "--dtype") }
        #expect(try DTypeChoice(parsing: "bf16", source: "--dtype") == .bfloat16)
    }

    /// A 20-step LoRA run in bf16 ends within 1% of the float32 run's loss; its adapter and moments
    /// stay float32.
    @Test func twentyLoRAStepsInBFloat16EndWithinOnePercentOfFloat32() throws {
        let samples = try TrainingEquivalenceTests.encoded()
        func run(_ dtype: ComputeDType) throws -> (StepRecord, Trainer) {
            let directory = ModelFixtures.directory(TrainingEquivalenceTests.name)
            let model = try LlamaModel(directory: directory, dtype: .fixed(dtype))
            var options = TrainingOptions()
            options.lora = LoRAConfig(rank: 8, alpha: 16)
            options.learningRate = 3e-3
            options.steps = 20
            options.microBatchSize = 2
            options.shuffle = false
            let trainer = try Trainer(model: model, modelDirectory: directory, options: options,
                                      adapter: try TrainingEquivalenceTests.freshAdapter(model), train: samples, eval: [])
            var last: StepRecord?
            for _ in 0..<20 { last = try trainer.runStep() }
            return (try #require(last), trainer)
        }
        let (float32, _) = try run(.float32)
        let (bfloat16, trainer) = try run(.bfloat16)
        #expect(bfloat16.loss != float32.loss, "the bf16 run computed in bf16")
        let relative = abs(bfloat16.loss - float32.loss) / float32.loss
        #expect(relative < 0.01, "final loss bf16 \(bfloat16.loss) vs float32 \(float32.loss): relative \(relative)")
        #expect(trainer.engine.model.matrices.allSatisfy { $0.float == nil }, "the frozen base stays bf16 during LoRA training")
    }

    /// Full fine-tuning in bf16 updates float32 master weights; the bf16 copies the products read
    /// are the masters rounded, in every pass after a step.
    @Test func fullFineTuningKeepsFloat32MastersAndRoundsTheirCopies() throws {
        let samples = try TrainingEquivalenceTests.encoded()
        let directory = ModelFixtures.directory(TrainingEquivalenceTests.name)
        let model = try LlamaModel(directory: directory, dtype: .bfloat16, keepFloatWeights: true)
        #expect(throws: ModelError.self) {
            _ = try GradientEngine(model: try LlamaModel(directory: directory, dtype: .bfloat16), adapter: nil, trainsBase: true)
        }
        var options = TrainingOptions()
        options.method = .full
        options.learningRate = 1e-3
        options.steps = 3
        let trainer = try Trainer(model: model, modelDirectory: directory, options: options, adapter: nil, train: samples, eval: [])
        let before = try #require(model.layers[0].qProj.float).array
        let first = try trainer.runStep()
        let second = try trainer.runStep()
        #expect(first.loss.isFinite && second.loss.isFinite)
        _ = try trainer.accumulateStep()  // the third step's passes read the copies of the second step's masters
        for matrix in model.matrices {
            let master = try #require(matrix.float), copy = try #require(matrix.bfloat16)
            for i in Swift.stride(from: 0, to: matrix.count, by: 97) {
                #expect(copy.pointer[i] == HalfPrecision.floatToBFloat16(master.pointer[i]))
            }
        }
        #expect(try #require(model.layers[0].qProj.float).array != before, "the master weights trained")
    }
}
