import Foundation
import RefineryTensor
import Testing
@testable import RefineryModel

/// Several LoRA adapters on one base in one decoding batch: each sequence's rows get its own
/// adapter's term, unmerged — the logits equal those of the adapter merged into the weights, and
/// a sequence without an adapter gets the base's.
@Suite struct SequenceAdapterTests {
    @Test func eachSequenceDecodesWithItsOwnAdapter() throws {
        let directory = ModelFixtures.directory("llama-gqa")
        let base = try LlamaModel(directory: directory, dtype: .float32)
        let adapters = try (0..<2).map { seed -> LoRAAdapter in
            let adapter = try LoRAAdapter.initialize(model: base.config, config: LoRAConfig(rank: 4, alpha: 8), seed: UInt64(seed + 1))
            for pair in adapter.pairs.values {
                for i in 0..<pair.b.shape.reduce(1, *) { pair.b.pointer[i] = Float((i * 7 + seed * 13) % 31) / 31 - 0.5 }
            }
            return adapter
        }
        let prompt = [0, 297, 599, 673, 598, 490]
        // One batch: adapter 0, the base, adapter 1 (different lengths, so rows do not line up).
        let steps = [SequenceStep(tokens: prompt, cache: base.makeCache(capacity: 16), adapter: adapters[0]),
                     SequenceStep(tokens: Array(prompt.prefix(4)), cache: base.makeCache(capacity: 16)),
                     SequenceStep(tokens: Array(prompt.prefix(5)), cache: base.makeCache(capacity: 16), adapter: adapters[1])]
        let hidden = try base.hiddenStates(batch: steps)
        let batched = base.logits(hidden: hidden, rows: [5, 9, 14])
        let vocab = base.config.vocabSize
        func row(_ tensor: Tensor, _ index: Int) -> [Float] { Array(UnsafeBufferPointer(start: tensor.pointer + index * vocab, count: vocab)) }
        for (index, (adapter, length)) in [(adapters[0] as LoRAAdapter?, 6), (nil, 4), (adapters[1], 5)].enumerated() {
            let model = try LlamaModel(directory: directory, dtype: .float32)
            if let adapter { model.merge(adapter) }
            let alone = try model.forward(tokens: Array(prompt.prefix(length)))
            let want = row(alone, length - 1), got = row(batched, index)
            let worst = zip(want, got).map { abs($0 - $1) }.max() ?? 0
            #expect(worst <= 1e-4, "sequence \(index): \(worst)")
            if adapter == nil { #expect(worst <= 1e-5, "the base sequence is untouched by its neighbours' adapters") }
            if adapter != nil {
                let plain = row(try base.forward(tokens: Array(prompt.prefix(length))), length - 1)
                #expect(zip(plain, got).map { abs($0 - $1) }.max() ?? 0 > 1e-2, "the adapter changes sequence \(index)'s logits")
            }
        }
        // An adapter of another shape is refused.
        var smaller = base.config
        smaller.hiddenSize = 32
        let wrong = try LoRAAdapter.initialize(model: smaller, config: LoRAConfig(rank: 2), seed: 1)
        #expect(throws: ModelError.self) {
            try base.hiddenStates(batch: [SequenceStep(tokens: prompt, cache: base.makeCache(capacity: 8), adapter: wrong)])
        }
    }
}
