import Foundation
import Testing
@testable import RefineryModel
import RefineryText

/// Masked losses of the fixture datasets against transformers (DESIGN §3.2–3.3).
@Suite struct EvalParityTests {
    @Test(arguments: ModelFixtures.names)
    func maskedLossMatchesTransformers(name: String) throws {
        let directory = ModelFixtures.directory(name)
        let expected = try #require(try ModelFixtures.expected(name)["eval"])
        let chat = try ChatTokenizer(directory: directory)
        let encoder = SampleEncoder(chat: chat)
        let samples = try DatasetReader().readAll(path: directory.appendingPathComponent("eval.jsonl").path)
        let encoded = try samples.map { try encoder.encode($0) }
        let perSample = try #require(expected["per_sample"]?.arrayValue)
        #expect(encoded.count == perSample.count)
        for (sample, reference) in zip(encoded, perSample) {
            #expect(sample.ids == ModelFixtures.ints(reference["ids"]), "\(name): token ids of the rendered sample")
            let trainedPositions = sample.trained.enumerated().filter(\.element).map(\.offset)
            #expect(trainedPositions == ModelFixtures.ints(reference["trained"]), "\(name): loss mask")
        }
        let model = try LlamaModel(directory: directory)
        let result = try Evaluator(model: model).evaluate(encoded)
        let wantLoss = try #require(expected["loss"]?.doubleValue)
        #expect(result.tokens == expected["tokens"]?.intValue)
        #expect(result.samples == expected["samples"]?.intValue)
        let relative = abs(result.loss - wantLoss) / wantLoss
        #expect(relative <= 1e-5, "\(name): loss \(result.loss) vs \(wantLoss), relative error \(relative)")
    }
}
