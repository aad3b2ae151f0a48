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
}
