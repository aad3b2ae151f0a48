import Foundation
import Testing
@testable import RefineryModel
import RefineryTensor
import RefineryText

/// Bad input gives a clear error, never a crash.
@Suite struct BadInputTests {
    /// Copies a fixture model folder to a temporary place the test may damage.
    func copyFixture(_ name: String) throws -> URL {
        let destination = try ModelFixtures.temporaryDirectory().appendingPathComponent(name)
        try FileManager.default.copyItem(at: ModelFixtures.directory(name), to: destination)
        return destination
    }

    func errorMessage(_ body: () throws -> Void) -> String? {
        do { try body(); return nil } catch { return "\(error)" }
    }

    @Test func missingConfigNamesTheFile() throws {
        let folder = try copyFixture("qwen2-tied")
        try FileManager.default.removeItem(at: folder.appendingPathComponent("config.json"))
        let message = try #require(errorMessage { _ = try LlamaModel(directory: folder) })
        #expect(message.contains("config.json") && message.contains(folder.path))
    }

    @Test func missingWeightsAreReported() throws {
        let folder = try copyFixture("qwen2-tied")
        try FileManager.default.removeItem(at: folder.appendingPathComponent("model.safetensors"))
        let message = try #require(errorMessage { _ = try LlamaModel(directory: folder) })
        #expect(message.contains("no safetensors weights"))
    }

    @Test func missingShardIsReported() throws {
        let folder = try copyFixture("llama-gqa")
        try FileManager.default.removeItem(at: folder.appendingPathComponent("model-00003-of-00009.safetensors"))
        let message = try #require(errorMessage { _ = try LlamaModel(directory: folder) })
        #expect(message.contains("model-00003-of-00009.safetensors") && message.contains("missing"))
    }

    @Test func missingTokenizerIsReported() throws {
        let folder = try copyFixture("qwen2-tied")
        try FileManager.default.removeItem(at: folder.appendingPathComponent("tokenizer.json"))
        let message = try #require(errorMessage { _ = try ChatTokenizer(directory: folder) })
        #expect(message.contains("tokenizer.json"))
    }

    @Test func unknownModelTypeIsRefused() throws {
        let folder = try copyFixture("qwen2-tied")
        let url = folder.appendingPathComponent("config.json")
        let text = try String(contentsOf: url, encoding: .utf8).replacingOccurrences(of: "\"qwen2\"", with: "\"gpt_neox\"")
        try text.write(to: url, atomically: true, encoding: .utf8)
        let message = try #require(errorMessage { _ = try LlamaModel(directory: folder) })
        #expect(message.contains("gpt_neox") && message.contains("not supported"))
    }

    @Test func wrongTensorShapeNamesTensorAndShapes() throws {
        let folder = try copyFixture("qwen2-tied")
        let url = folder.appendingPathComponent("config.json")
        let text = try String(contentsOf: url, encoding: .utf8).replacingOccurrences(of: "\"intermediate_size\": 160", with: "\"intermediate_size\": 128")
        try text.write(to: url, atomically: true, encoding: .utf8)
        let message = try #require(errorMessage { _ = try LlamaModel(directory: folder) })
        #expect(message.contains("model.layers.0.mlp.gate_proj.weight"), "\(message)")
        #expect(message.contains("[160, 64]") && message.contains("[128, 64]"), "\(message)")
    }

    /// Writes `bytes` as a safetensors file and returns the error message from opening it.
    func openError(_ bytes: [UInt8]) throws -> String? {
        let url = try ModelFixtures.temporaryDirectory().appendingPathComponent("model.safetensors")
        try Data(bytes).write(to: url)
        return errorMessage { _ = try SafetensorsFile(path: url.path) }
    }

    static func file(header: String, dataBytes: Int) -> [UInt8] {
        let h = Array(header.utf8)
        var bytes: [UInt8] = (0..<8).map { UInt8((UInt64(h.count) >> (8 * UInt64($0))) & 0xFF) }
        bytes += h
        bytes += [UInt8](repeating: 0, count: dataBytes)
        return bytes
    }

    @Test func truncatedFileIsRefused() throws {
        let original = try Array(Data(contentsOf: ModelFixtures.directory("qwen2-tied").appendingPathComponent("model.safetensors")))
        let message = try #require(try openError(Array(original.prefix(original.count / 2))))
        #expect(message.contains("past the end"), "\(message)")
        let tiny = try #require(try openError([1, 2, 3]))
        #expect(tiny.contains("shorter than the 8-byte header"))
    }

    @Test func corruptHeadersAreRefused() throws {
        let badJSON = try #require(try openError(Self.file(header: "{\"a\": [1, 2", dataBytes: 0)))
        #expect(badJSON.contains("not valid JSON"))
        let pastEnd = try #require(try openError(Self.file(header: #"{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#, dataBytes: 8)))
        #expect(pastEnd.contains("\"w\"") && pastEnd.contains("past the end"))
        let overlap = try #require(try openError(Self.file(
            header: #"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}}"#,
            dataBytes: 24)))
        #expect(overlap.contains("overlap"))
        let wrongSize = try #require(try openError(Self.file(header: #"{"w":{"dtype":"BF16","shape":[4],"data_offsets":[0,16]}}"#, dataBytes: 16)))
        #expect(wrongSize.contains("needs 8 bytes"))
        let badDType = try #require(try openError(Self.file(header: #"{"w":{"dtype":"Q4","shape":[2],"data_offsets":[0,16]}}"#, dataBytes: 16)))
        #expect(badDType.contains("Q4") && badDType.contains("I64"), "an unknown dtype names the known ones: \(badDType)")
        // Integer buffers (BERT's position_ids) are accepted in a file, never read as weights.
        let intURL = try ModelFixtures.temporaryDirectory().appendingPathComponent("model.safetensors")
        try Data(Self.file(header: #"{"ids":{"dtype":"I64","shape":[2],"data_offsets":[0,16]}}"#, dataBytes: 16)).write(to: intURL)
        let integers = try SafetensorsFile(path: intURL.path)
        #expect(integers.entries["ids"]?.dtype == .i64)
        let readError = try #require(errorMessage { _ = try integers.tensor("ids") })
        #expect(readError.contains("I64") && readError.contains("F32, F16 or BF16"))
        let wrongIntSize = try #require(try openError(Self.file(header: #"{"ids":{"dtype":"I64","shape":[2],"data_offsets":[0,8]}}"#, dataBytes: 8)))
        #expect(wrongIntSize.contains("needs 16 bytes"))
        let hugeLength = try #require(try openError([0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F, 0x7B, 0x7D]))
        #expect(hugeLength.contains("header length"))
    }

    @Test func invalidDatasetLineIsNamed() throws {
        let url = try ModelFixtures.temporaryDirectory().appendingPathComponent("data.jsonl")
        try "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}\n\n{\"messages\": [oops]}\n".write(to: url, atomically: true, encoding: .utf8)
        let message = try #require(errorMessage { _ = try DatasetReader().readAll(path: url.path) })
        #expect(message.contains("data.jsonl:3") && message.contains("not valid JSON"), "\(message)")
        try "{\"instruction\": \"x\", \"output\": 5}\n".write(to: url, atomically: true, encoding: .utf8)
        let typed = try #require(errorMessage { _ = try DatasetReader().readAll(path: url.path) })
        #expect(typed.contains("data.jsonl:1") && typed.contains("\"output\" must be a string"), "\(typed)")
        try Data("{\"text\": \"ok\"}\n{\"text\": \"".utf8 + [0xFF, 0xFE] + "\"}\n".utf8).write(to: url)
        let utf8 = try #require(errorMessage { _ = try DatasetReader().readAll(path: url.path) })
        #expect(utf8.contains("data.jsonl:2") && utf8.contains("UTF-8"), "\(utf8)")
        try "{\"foo\": 1}\n".write(to: url, atomically: true, encoding: .utf8)
        let unknown = try #require(errorMessage { _ = try DatasetReader().readAll(path: url.path) })
        #expect(unknown.contains("cannot tell the dataset format"))
    }

    @Test func emptyInputsDoNotCrash() throws {
        let model = try LlamaModel(directory: ModelFixtures.directory("llama-gqa"))
        #expect(try model.forward(tokens: []).shape == [0, model.config.vocabSize])
        #expect(throws: ModelError.self) { _ = try model.generate(prompt: [], options: SamplingOptions()) }
        let engine = try GradientEngine(model: model, adapter: nil, trainsBase: true)
        #expect(try engine.accumulate(TrainingSequence(ids: [], trained: []), scale: 1).tokens == 0)
        #expect(try engine.accumulate(TrainingSequence(ids: [1], trained: [true]), scale: 1).tokens == 0)
    }

    @Test func outOfVocabularyTokenIsRefused() throws {
        let model = try LlamaModel(directory: ModelFixtures.directory("qwen2-tied"))
        let message = try #require(errorMessage { _ = try model.forward(tokens: [1, 100_000]) })
        #expect(message.contains("100000"))
    }
}
