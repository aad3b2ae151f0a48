import Foundation
import Testing

/// `refinery export --format gguf`: the file is written (and an adapter merged first), an
/// existing file is kept unless `--overwrite`, an unknown type is refused with the choices.
@Suite struct GGUFCommandTests {
    @Test func exportWritesAGGUFFileAndRefusesBadRequests() async throws {
        try await offThePool {
            let dir = try TrainCommandTests.temporary()
            let path = dir.appendingPathComponent("model.gguf").path
            let first = try CommandLineTests.run(["export", "--model", TrainCommandTests.llama, "--format", "gguf", "--quant", "q8_0", "--output", path])
            #expect(first.status == 0 && first.stdout.contains("GGUF, q8_0"), "\(first.stderr)")
            let bytes = try Data(contentsOf: URL(fileURLWithPath: path))
            #expect(bytes.prefix(4) == Data("GGUF".utf8) && bytes.count > 10_000)
            let again = try CommandLineTests.run(["export", "--model", TrainCommandTests.llama, "--format", "gguf", "--output", path])
            #expect(again.status != 0 && again.stderr.contains("--overwrite"), "\(again.stderr)")
            let bad = try CommandLineTests.run(["export", "--model", TrainCommandTests.llama, "--format", "gguf", "--quant", "q5_k", "--output", path + "2"])
            #expect(bad.status != 0 && bad.stderr.contains("q4_0") && !FileManager.default.fileExists(atPath: path + "2"), "\(bad.stderr)")
            // An adapter is merged first: a trained one changes the file.
            let adapter = dir.appendingPathComponent("adapter").path
            let train = try CommandLineTests.run(["train", "--model", TrainCommandTests.llama, "--data", TrainCommandTests.trainData, "--output", adapter,
                                                  "--steps", "2", "--lora-r", "4", "--lr", "0.05"])
            #expect(train.status == 0, "\(train.stderr)")
            let merged = try CommandLineTests.run(["export", "--model", TrainCommandTests.llama, "--adapter", adapter, "--format", "gguf", "--quant", "q8_0",
                                                   "--output", dir.appendingPathComponent("merged.gguf").path])
            #expect(merged.status == 0 && merged.stdout.contains("merged"), "\(merged.stderr)")
            #expect(try Data(contentsOf: dir.appendingPathComponent("merged.gguf")) != bytes, "the adapter changed the weights")
            let noAdapter = try CommandLineTests.run(["export", "--model", TrainCommandTests.llama, "--output", dir.appendingPathComponent("folder").path])
            #expect(noAdapter.status != 0 && noAdapter.stderr.contains("--adapter is required"), "\(noAdapter.stderr)")
        }
    }
}
