import Foundation
import Testing
@testable import RefineryModel
import RefineryTensor

/// QLoRA (the base projections in 4-bit NF4, the adapter in float32) against LoRA on the same
/// base, data, adapter start and seed.
@Suite struct QLoRATrainingTests {
    static func run(_ method: TrainingMethod, dtype: ComputeDType, steps: Int) throws -> (records: [StepRecord], model: LlamaModel) {
        let directory = ModelFixtures.directory(TrainingEquivalenceTests.name)
        let model = try LlamaModel(directory: directory, dtype: .fixed(dtype), projections: method.quantizesBase ? .nf4 : .asStored)
        var options = TrainingOptions()
        options.method = method
        options.lora = LoRAConfig(rank: 8, alpha: 16)
        options.learningRate = 1e-3
        options.microBatchSize = 2
        options.shuffle = false
        options.steps = steps
        try options.validate()
        let trainer = try Trainer(model: model, modelDirectory: directory, options: options,
                                  adapter: try TrainingEquivalenceTests.freshAdapter(model),
                                  train: try TrainingEquivalenceTests.encoded(), eval: [])
        return (try (0..<steps).map { _ in try trainer.runStep() }, model)
    }

    @Test(arguments: [ComputeDType.float32, .bfloat16])
    func twentyStepsEndWithinTwoPercentOfLoRA(dtype: ComputeDType) throws {
        let lora = try Self.run(.lora, dtype: dtype, steps: 20)
        let qlora = try Self.run(.qlora, dtype: dtype, steps: 20)
        #expect(qlora.model.hasQuantizedProjections && !lora.model.hasQuantizedProjections)
        // The 4-bit base really differs (else this would compare LoRA with itself)...
        #expect(qlora.records[0].loss != lora.records[0].loss)
        // ...and trains alike: the run's loss (its last step, and its mean over the 20 steps) within
        // 2% of LoRA's. Single steps (2 samples each) wander further: up to 2.1% at step 3 here, so
        // each is held to 3%.
        let (q, l) = (qlora.records[19].loss, lora.records[19].loss)
        #expect(abs(q - l) / l <= 0.02, "\(dtype) last step: QLoRA \(q) vs LoRA \(l)")
        let qMean = qlora.records.map(\.loss).reduce(0, +) / 20, lMean = lora.records.map(\.loss).reduce(0, +) / 20
        #expect(abs(qMean - lMean) / lMean <= 0.02, "\(dtype) mean: QLoRA \(qMean) vs LoRA \(lMean)")
        for (q, l) in zip(qlora.records, lora.records) {
            #expect(abs(q.loss - l.loss) / l.loss <= 0.03, "\(dtype) step \(l.step): QLoRA \(q.loss) vs LoRA \(l.loss)")
        }
        let (first, last) = (qlora.records[0].loss, qlora.records[19].loss)
        #expect(last < first, "QLoRA's loss falls: \(first) → \(last)")
        print("QLoRA vs LoRA (\(dtype)): last \(q) vs \(l), mean \(qMean) vs \(lMean)")
    }

    @Test func qloraIsAcceptedAndItsMergedExportUsesTheDequantizedBase() throws {
        var options = TrainingOptions()
        options.method = .qlora
        try options.validate()
        let directory = ModelFixtures.directory(TrainingEquivalenceTests.name)
        let roundTrip = try LlamaModel(directory: directory, projections: .nf4RoundTrip)
        let quantized = try LlamaModel(directory: directory, projections: .nf4)
        let plain = try LlamaModel(directory: directory)
        let (a, b, c) = (roundTrip.layers[1].downProj.floatValues(), quantized.layers[1].downProj.floatValues(), plain.layers[1].downProj.floatValues())
        #expect((0..<a.count).allSatisfy { a.pointer[$0] == b.pointer[$0] }, "the round trip holds the 4-bit values")
        #expect((0..<a.count).contains { a.pointer[$0] != c.pointer[$0] }, "which differ from the checkpoint's")
        #expect(roundTrip.layers[1].downProj.nf4 == nil && quantized.layers[1].downProj.nf4 != nil)
        #expect(quantized.embedTokens.nf4 == nil, "embeddings stay as stored")
    }
}
