import Foundation
import RefineryCore
import RefineryTensor
import Testing
@testable import RefineryModel

/// Batched decoding: several sequences in one pass give what each gives alone, sequences join and
/// leave between steps, and the KV cache is kept in the model's dtype.
@Suite struct BatchDecodingTests {
    /// Prompts of different lengths, cut from the fixture's token ids.
    static func prompts(_ name: String) throws -> [[Int]] {
        let ids = ModelFixtures.ints(try ModelFixtures.expected(name)["logits_ids"]?.arrayValue?.first)
        return [Array(ids.prefix(7)), Array(ids.prefix(3)), Array(ids.suffix(11)), Array(ids.prefix(1)), Array(ids.dropFirst(2).prefix(5))]
    }

    @Test(arguments: ["float32", "bfloat16"])
    func aBatchDecodesWhatEachSequenceDecodesAlone(dtype: String) throws {
        let dtype = try #require(ComputeDType(spelling: dtype))
        let model = try LlamaModel(directory: ModelFixtures.directory("llama-gqa"), dtype: .fixed(dtype))
        let prompts = try Self.prompts("llama-gqa")
        let requests = prompts.enumerated().map { index, prompt in
            // Greedy and sampled sequences side by side, with their own budgets.
            (prompt: prompt, options: index % 2 == 0 ? SamplingOptions(maxNewTokens: 9 + index)
                                                      : SamplingOptions(maxNewTokens: 12, temperature: 0.9, topP: 0.95, topK: 40, seed: UInt64(index)))
        }
        let alone = try requests.map { try model.generate(prompt: $0.prompt, options: $0.options) }
        let together = try model.generate(prompts: requests, batchSize: prompts.count)
        #expect(together == alone)
        // Fewer places than prompts: finished sequences make room for the waiting ones.
        var seen: [Int: [Int]] = [:]
        let twoAtATime = try model.generate(prompts: requests, batchSize: 2) { index, token in
            seen[index, default: []].append(token)
            return true
        }
        #expect(twoAtATime == alone)
        #expect(prompts.indices.map { seen[$0] ?? [] } == alone, "onToken sees every token of every sequence")
        #expect(alone.enumerated().allSatisfy { $0.element.count == requests[$0.offset].options.maxNewTokens })
    }

    @Test func theBatchIsOnePassOverAllRowsWhoseLogitsMatchSeparatePasses() throws {
        let model = try LlamaModel(directory: ModelFixtures.directory("qwen2-tied"))
        let prompts = try Self.prompts("qwen2-tied")
        let caches = prompts.map { model.makeCache(capacity: $0.count + 1) }
        let hidden = try model.hiddenStates(batch: zip(prompts, caches).map { SequenceStep(tokens: $0, cache: $1) })
        #expect(hidden.shape == [prompts.map(\.count).reduce(0, +), model.config.hiddenSize])
        #expect(zip(prompts, caches).allSatisfy { $0.count == $1.length })
        var row = 0
        for prompt in prompts {
            let alone = try model.hiddenStates(tokens: prompt)
            var maxError: Float = 0
            for i in 0..<alone.count { maxError = max(maxError, abs(alone.pointer[i] - hidden.pointer[row * model.config.hiddenSize + i])) }
            #expect(maxError <= 1e-5, "prompt of \(prompt.count): max error \(maxError)")
            row += prompt.count
        }
    }

    @Test func aBFloat16ModelKeepsABFloat16CacheThatDecodesLikeItsFullForward() throws {
        let name = "mistral-sp"
        let bf16 = try LlamaModel(directory: ModelFixtures.directory(name), dtype: .fixed(.bfloat16))
        let fp32 = try LlamaModel(directory: ModelFixtures.directory(name), dtype: .fixed(.float32))
        #expect(bf16.makeCache(capacity: 10).dtype == .bfloat16 && fp32.makeCache(capacity: 10).dtype == .float32)
        #expect(bf16.makeCache(capacity: 10).bytes * 2 == fp32.makeCache(capacity: 10).bytes)
        let ids = ModelFixtures.ints(try ModelFixtures.expected(name)["logits_ids"]?.arrayValue?.first)
        let full = try bf16.forward(tokens: ids)
        let cache = bf16.makeCache(capacity: ids.count)
        let split = ids.count / 2
        _ = try bf16.forward(tokens: Array(ids[..<split]), cache: cache)
        var worst: Float = 0, scale: Float = 0
        for position in split..<ids.count {
            let step = try bf16.forward(tokens: [ids[position]], cache: cache)
            for v in 0..<bf16.config.vocabSize {
                let want = full.pointer[position * bf16.config.vocabSize + v]
                worst = max(worst, abs(step.pointer[v] - want))
                scale = max(scale, abs(want))
            }
        }
        // Keys and values are rounded to bfloat16 in the cache (as transformers keeps them in a
        // bf16 model): close to the full forward, not bit-equal.
        #expect(worst > 0 && worst <= 0.02 * scale, "max error \(worst) against logits up to \(scale)")
    }

    @Test func badBatchesAreRefusedWithReasons() throws {
        let model = try LlamaModel(directory: ModelFixtures.directory("llama-gqa"))
        let cache = model.makeCache(capacity: 4)
        #expect(throws: ModelError.self) { _ = try model.hiddenStates(batch: [SequenceStep(tokens: [1], cache: cache), SequenceStep(tokens: [2], cache: cache)]) }
        #expect(throws: ModelError.self) { _ = try model.hiddenStates(batch: [SequenceStep(tokens: [], cache: cache)]) }
        #expect(throws: ModelError.self) { _ = try model.hiddenStates(batch: [SequenceStep(tokens: [1, 2, 3, 4, 5], cache: cache)]) }
        #expect(cache.length == 0, "a refused batch changes no cache")
        #expect(throws: ModelError.self) { _ = try model.generate(prompts: [([1], SamplingOptions())], batchSize: 0) }
        let decoder = BatchDecoder(model: model)
        #expect(throws: ModelError.self) { _ = try decoder.add(prompt: [model.config.vocabSize], options: SamplingOptions()) }
        // A budget far beyond the context ends at the context instead of allocating for it.
        let unbounded = try model.generate(prompt: [1, 2, 3], options: SamplingOptions(maxNewTokens: Int.max))
        #expect(unbounded.count == model.config.maxPositionEmbeddings - 3, "\(unbounded.count) of \(model.config.maxPositionEmbeddings)")
    }
}
