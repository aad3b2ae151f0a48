import Foundation
import Testing
@testable import RefineryModel
import RefineryTensor

/// The writer's files read back through the reader, in every dtype.
@Suite struct SafetensorsRoundTripTests {
    @Test(arguments: [SafetensorsDType.f32, .bf16, .f16])
    func writtenTensorsReadBack(dtype: SafetensorsDType) throws {
        let url = try ModelFixtures.temporaryDirectory().appendingPathComponent("t.safetensors")
        let a = Tensor(shape: [2, 3], values: [1, -2, 0.5, 3.25, -0.125, 1024])
        let b = Tensor(shape: [4], values: [0, 1, 2, 3])
        try SafetensorsWriter.write([("b", b), ("a", a)], to: url.path, dtype: dtype)
        let file = try SafetensorsFile(path: url.path)
        #expect(file.names == ["a", "b"])
        #expect(file.metadata["format"] == "pt")
        #expect(try file.tensor("a").array == a.array)
        #expect(try file.tensor("b").shape == [4])
        #expect(file.dtype(of: "a") == dtype)
    }

    @Test func referenceFileWrittenByPyTorchReads() throws {
        // expected_logits.safetensors was written by safetensors.torch in the fixture script.
        let file = try SafetensorsFile(path: ModelFixtures.directory("llama-gqa").appendingPathComponent("expected_logits.safetensors").path)
        #expect(file.names == ["logits.0", "logits.1"])
        #expect(try file.tensor("logits.0").shape.last == 700)
    }
}
