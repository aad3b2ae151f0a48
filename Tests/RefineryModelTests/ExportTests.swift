import Foundation
import Testing
@testable import RefineryModel
import RefineryTensor

/// Merging an adapter reproduces PEFT's logits; the exported folder reloads to the same model.
@Suite struct ExportTests {
    @Test func mergedModelGivesPEFTLogits() throws {
        let directory = ModelFixtures.directory("llama-gqa")
        let training = directory.appendingPathComponent("training")
        let model = try LlamaModel(directory: directory)
        let adapter = try LoRAAdapter.load(directory: training.appendingPathComponent("lora_final"), model: model.config)
        let reference = try SafetensorsFile(path: training.appendingPathComponent("lora_final_logits.safetensors").path)
        let ids = try reference.tensor("ids").array.map { Int($0) }
        let want = try reference.tensor("logits")
        model.merge(adapter)
        let logits = try model.forward(tokens: ids)
        #expect(TrainingParityTests.relativeError(logits, want) <= 1e-4)

        let output = try ModelFixtures.temporaryDirectory().appendingPathComponent("merged")
        try model.writeFolder(to: output, copyingFrom: directory, dtype: .f32)
        for file in ["config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "model.safetensors"] {
            #expect(FileManager.default.fileExists(atPath: output.appendingPathComponent(file).path), "\(file)")
        }
        let reloaded = try LlamaModel(directory: output)
        #expect(try reloaded.forward(tokens: ids).array == logits.array)
    }

    @Test func adapterRoundTripsThroughPEFTFiles() throws {
        let directory = ModelFixtures.directory("qwen2-tied")
        let model = try LlamaModel(directory: directory)
        let adapter = try LoRAAdapter.load(directory: directory.appendingPathComponent("training/lora_final"), model: model.config)
        let output = try ModelFixtures.temporaryDirectory()
        try adapter.save(directory: output, baseModel: directory.path)
        let again = try LoRAAdapter.load(directory: output, model: model.config)
        #expect(again.config == LoRAConfig(rank: 8, alpha: 16, dropout: 0, useRSLoRA: false,
                                           targets: .names(["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"])))
        for (name, pair) in adapter.pairs {
            #expect(again.pairs[name]?.a.array == pair.a.array && again.pairs[name]?.b.array == pair.b.array, "\(name)")
        }
    }
}
