import Foundation
import RefineryCore
import Testing
@testable import RefineryModel

/// Sampling options behave as documented.
@Suite struct GenerationTests {
    let model: LlamaModel
    let prompt: [Int]

    init() throws {
        model = try LlamaModel(directory: ModelFixtures.directory("qwen2-tied"))
        prompt = ModelFixtures.ints(try ModelFixtures.expected("qwen2-tied")["greedy"]?["prompt_ids"])
    }

    @Test func sameSeedSameSample() throws {
        let options = SamplingOptions(maxNewTokens: 12, temperature: 1.0, topP: 0.9, topK: 50, seed: 7)
        let a = try model.generate(prompt: prompt, options: options)
        let b = try model.generate(prompt: prompt, options: options)
        #expect(a == b && a.count == 12)
        var other = options
        other.seed = 8
        let c = try model.generate(prompt: prompt, options: other)
        #expect(c != a, "a different seed should give a different sample of 12 tokens")
    }

    @Test func topKOfOneIsGreedy() throws {
        let greedy = try model.generate(prompt: prompt, options: SamplingOptions(maxNewTokens: 10))
        let topOne = try model.generate(prompt: prompt, options: SamplingOptions(maxNewTokens: 10, temperature: 1.5, topK: 1, seed: 3))
        #expect(greedy == topOne)
    }

    @Test func stopsAtAStopToken() throws {
        let free = try model.generate(prompt: prompt, options: SamplingOptions(maxNewTokens: 10))
        let stop = free[3]
        let stopped = try model.generate(prompt: prompt, options: SamplingOptions(maxNewTokens: 10, stopTokens: [stop]))
        #expect(stopped == Array(free.prefix(through: free.firstIndex(of: stop)!)))
    }

    @Test func topPSamplesOnlyFromTheNucleus() {
        var generator = SplitMix64(seed: 1)
        let logits: [Float] = [5, 4.9, 0, -1, -2]
        for _ in 0..<200 {
            let pick = Sampler.pick(logits, options: SamplingOptions(temperature: 1, topP: 0.5), generator: &generator)
            #expect(pick == 0 || pick == 1)
        }
    }
}
