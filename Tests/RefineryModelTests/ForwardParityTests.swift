import Foundation
import Testing
@testable import RefineryModel
import RefineryTensor

/// Logits and greedy continuations against transformers on the fixture checkpoints.
@Suite struct ForwardParityTests {
    @Test(arguments: ModelFixtures.names)
    func logitsMatchTransformers(name: String) throws {
        let model = try LlamaModel(directory: ModelFixtures.directory(name))
        let expected = try ModelFixtures.expected(name)
        let reference = try SafetensorsFile(path: ModelFixtures.directory(name).appendingPathComponent("expected_logits.safetensors").path)
        let sequences = try #require(expected["logits_ids"]?.arrayValue)
        #expect(sequences.count == 2)
        for (index, sequence) in sequences.enumerated() {
            let ids = ModelFixtures.ints(sequence)
            let logits = try model.forward(tokens: ids)
            let want = try reference.tensor("logits.\(index)")
            #expect(logits.shape == want.shape)
            var maxError: Float = 0
            for i in 0..<min(logits.count, want.count) { maxError = max(maxError, abs(logits.pointer[i] - want.pointer[i])) }
            #expect(maxError <= 1e-4, "\(name) sequence \(index): max abs logit error \(maxError)")
        }
    }

    @Test(arguments: ModelFixtures.names)
    func cachedDecodingMatchesFullForward(name: String) throws {
        let model = try LlamaModel(directory: ModelFixtures.directory(name))
        let ids = ModelFixtures.ints(try ModelFixtures.expected(name)["logits_ids"]?.arrayValue?.first)
        let full = try model.forward(tokens: ids)
        let cache = model.makeCache(capacity: ids.count)
        let split = ids.count / 2
        _ = try model.forward(tokens: Array(ids[..<split]), cache: cache)
        let rest = try model.forward(tokens: Array(ids[split...]), cache: cache)
        let vocab = model.config.vocabSize
        var maxError: Float = 0
        for row in 0..<(ids.count - split) {
            for v in 0..<vocab {
                maxError = max(maxError, abs(rest.pointer[row * vocab + v] - full.pointer[(split + row) * vocab + v]))
            }
        }
        #expect(maxError <= 1e-5, "\(name): cached vs full max error \(maxError)")
    }

    @Test(arguments: ModelFixtures.names)
    func greedyContinuationMatchesTransformers(name: String) throws {
        let model = try LlamaModel(directory: ModelFixtures.directory(name))
        let greedy = try #require(try ModelFixtures.expected(name)["greedy"])
        let prompt = ModelFixtures.ints(greedy["prompt_ids"])
        let want = ModelFixtures.ints(greedy["ids"])
        let got = try model.generate(prompt: prompt, options: SamplingOptions(maxNewTokens: greedy["max_new_tokens"]?.intValue ?? 0,
                                                                           stopTokens: Set(model.config.eosTokenIDs)))
        #expect(got == want, "\(name)")
    }
}
