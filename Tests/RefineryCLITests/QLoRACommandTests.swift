import Foundation
import RefineryModel
import RefineryTensor
import Testing

/// `train --method qlora`, then `export` and `eval --adapter` of its adapter, as a user runs them.
@Suite struct QLoRACommandTests {
    @Test func aQLoRAAdapterMergesIntoTheDequantizedBaseInBFloat16() async throws {
        try await offThePool {
            let dir = try TrainCommandTests.temporary()
            let out = dir.appendingPathComponent("run"), merged = dir.appendingPathComponent("merged")
            let train = try CommandLineTests.run(["train", "--model", TrainCommandTests.llama, "--data", TrainCommandTests.trainData,
                                                  "--output", out.path, "--method", "qlora", "--steps", "3", "--lora-r", "4", "--lr", "1e-2"])
            #expect(train.status == 0, "\(train.stderr)")
            #expect(train.stderr.contains("base projections in 4-bit NF4"))
            #expect(FileManager.default.fileExists(atPath: out.appendingPathComponent("qlora_base.json").path))
            let export = try CommandLineTests.run(["export", "--model", TrainCommandTests.llama, "--adapter", out.path, "--output", merged.path])
            #expect(export.status == 0, "\(export.stderr)")
            #expect(export.stdout.contains("NF4-dequantized base") && export.stdout.lowercased().contains("bf16"), "\(export.stdout)")
            // The merged weights: the 4-bit base de-quantized plus the adapter's product, rounded to bfloat16.
            let base = try LlamaModel(directory: URL(fileURLWithPath: TrainCommandTests.llama), projections: .nf4RoundTrip)
            base.merge(try LoRAAdapter.load(directory: out, model: base.config))
            let want = base.layers[1].downProj.floatValues()
            let got = try LlamaModel(directory: merged).layers[1].downProj.floatValues()
            let rounded = BFloat16Storage(rounding: want.pointer, count: want.count)
            let wantBits = (0..<want.count).map { rounded.pointer[$0] }
            let gotBits = BFloat16Storage(rounding: got.pointer, count: got.count)
            #expect((0..<got.count).allSatisfy { gotBits.pointer[$0] == wantBits[$0] }, "merged = bf16(dequantized NF4 base + s·B·A)")
            // Evaluating with the adapter uses the same base (and runs).
            let eval = try CommandLineTests.run(["eval", "--model", TrainCommandTests.llama, "--adapter", out.path, "--data", TrainCommandTests.trainData])
            #expect(eval.status == 0 && eval.stdout.contains("\"loss\""), "\(eval.stderr)")
        }
    }

    /// `--nf4-cache`: the first QLoRA run writes the 4-bit base, the second reads it and trains the
    /// same adapter bits; a LoRA run ignores the cache.
    @Test func theNF4CacheIsWrittenOnceThenReadWithTheSameResult() async throws {
        try await offThePool {
            let dir = try TrainCommandTests.temporary()
            let cache = dir.appendingPathComponent("nf4-cache")
            func train(_ name: String, method: String = "qlora") throws -> CommandLineTests.Result {
                try CommandLineTests.run(["train", "--model", TrainCommandTests.llama, "--data", TrainCommandTests.trainData,
                                          "--output", dir.appendingPathComponent(name).path, "--method", method, "--steps", "2",
                                          "--lora-r", "4", "--nf4-cache", cache.path])
            }
            let first = try train("a"), second = try train("b")
            #expect(first.status == 0 && second.status == 0, "\(first.stderr)\n\(second.stderr)")
            #expect(first.stderr.contains("wrote the 4-bit projections to \(cache.path)"), "\(first.stderr)")
            #expect(second.stderr.contains("read the 4-bit projections from \(cache.path)"), "\(second.stderr)")
            let files = try FileManager.default.contentsOfDirectory(atPath: cache.path)
            #expect(files.count == 1 && files[0].hasPrefix("nf4-"), "\(files)")
            let a = try Data(contentsOf: dir.appendingPathComponent("a/adapter_model.safetensors"))
            let b = try Data(contentsOf: dir.appendingPathComponent("b/adapter_model.safetensors"))
            #expect(a == b, "the cached base trains the same bits")
            let lora = try train("c", method: "lora")
            #expect(lora.status == 0 && !lora.stderr.contains("4-bit projections"), "\(lora.stderr)")
        }
    }
}
