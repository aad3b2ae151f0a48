import Foundation
import RefineryCore
import RefineryTensor
import RefineryText

/// Decodes several sequences together (continuous batching). Each `step()` is one pass over the
/// new tokens of every unfinished sequence — its whole prompt when it has just joined, else its
/// last token — so the weights are read once per step for the whole batch. Every sequence keeps
/// its own KV cache (in the model's dtype), sampler state, token budget, stop tokens and, if any,
/// a `TokenConstraint` that masks its logits (constrained decoding), and may join or leave
/// between steps.
public final class BatchDecoder {
    /// One sequence's new token from a step.
    public struct Emission: Sendable, Equatable {
        /// The sequence (`add`'s return value).
        public let sequence: Int
        public let token: Int
        /// True when the sequence ended with this token (a stop token, its token budget, the
        /// model's context, or a complete constrained output).
        public let finished: Bool
        /// With `SamplingOptions.logprobs`: the token's log-probability under the model (before
        /// sampling settings and constraints) and the most likely alternatives.
        public var logprob: Float? = nil
        public var topLogprobs: [TokenLogprob] = []
    }

    /// A token and its log-probability.
    public struct TokenLogprob: Sendable, Equatable {
        public let token: Int
        public let logprob: Float
    }

    private struct Sequence {
        let options: SamplingOptions
        let cache: KVCache
        var generator: SplitMix64
        var pending: [Int]
        var output: [Int] = []
        var finished = false
        let constraint: (any TokenConstraint)?
        let adapter: LoRAAdapter?
    }

    /// The model decoded with.
    public let model: LlamaModel
    private var sequences: [Int: Sequence] = [:]
    private var order: [Int] = []
    private var nextID = 0

    public init(model: LlamaModel) {
        self.model = model
    }

    /// Unfinished sequences.
    public var activeCount: Int { order.count { !(sequences[$0]?.finished ?? true) } }

    /// Starts a sequence continuing `prompt` (token ids); its prompt runs in the next step.
    /// Returns its id.
    public func add(prompt: [Int], options: SamplingOptions, constraint: (any TokenConstraint)? = nil, adapter: LoRAAdapter? = nil) throws -> Int {
        guard !prompt.isEmpty else { throw ModelError("the prompt is empty: give at least one token (or a tokenizer that adds BOS)") }
        guard options.maxNewTokens >= 0 else { throw ModelError("max new tokens must be ≥ 0") }
        for token in prompt where token < 0 || token >= model.config.vocabSize {
            throw ModelError("token id \(token) is outside the vocabulary (0..<\(model.config.vocabSize))")
        }
        let id = nextID
        nextID += 1
        // The cache holds the prompt and the new tokens, but never more than the model's context
        // (a huge max_new_tokens must not allocate gigabytes): a sequence ends when it is full.
        let context = max(model.config.maxPositionEmbeddings, prompt.count + 1)
        let capacity = prompt.count + min(options.maxNewTokens, context - prompt.count)
        sequences[id] = Sequence(options: options, cache: model.makeCache(capacity: capacity),
                                 generator: SplitMix64(seed: options.seed), pending: prompt,
                                 finished: options.maxNewTokens == 0 || constraint?.isComplete == true, constraint: constraint,
                                 adapter: adapter)
        order.append(id)
        return id
    }

    /// The tokens sequence `id` has produced so far (empty for an unknown id).
    public func output(of id: Int) -> [Int] { sequences[id]?.output ?? [] }

    /// True once sequence `id` has ended (or is unknown).
    public func isFinished(_ id: Int) -> Bool { sequences[id]?.finished ?? true }

    /// Forgets sequence `id` (finished or not) and frees its cache.
    public func remove(_ id: Int) {
        sequences[id] = nil
        order.removeAll { $0 == id }
    }

    /// Ends sequence `id` early: it takes no further part in steps (its output stays readable).
    public func finish(_ id: Int) {
        sequences[id]?.finished = true
    }

    /// Runs one pass over every unfinished sequence and samples one token for each. Returns the
    /// new tokens in the order the sequences were added; empty when none is unfinished.
    public func step() throws -> [Emission] {
        let active = order.filter { !(sequences[$0]?.finished ?? true) }
        guard !active.isEmpty else { return [] }
        var steps: [SequenceStep] = [], lastRows: [Int] = []
        var rows = 0
        for id in active {
            guard let sequence = sequences[id] else { continue }
            steps.append(SequenceStep(tokens: sequence.pending, cache: sequence.cache, adapter: sequence.adapter))
            rows += sequence.pending.count
            lastRows.append(rows - 1)
        }
        let hidden = try model.hiddenStates(batch: steps)
        let logits = model.logits(hidden: hidden, rows: lastRows)
        let vocab = model.config.vocabSize
        var emitted: [Emission] = []
        for (row, id) in active.enumerated() {
            guard var sequence = sequences[id] else { continue }
            let raw = Array(UnsafeBufferPointer(start: logits.pointer + row * vocab, count: vocab))
            var values = raw
            if let constraint = sequence.constraint {
                constraint.mask(&values, remaining: sequence.options.maxNewTokens - sequence.output.count)
                guard values.contains(where: { $0 > -.infinity }) else {
                    // Nothing may follow (a budget smaller than the shortest valid output): the sequence ends.
                    sequence.finished = true
                    sequences[id] = sequence
                    continue
                }
            }
            let next = Sampler.pick(values, options: sequence.options, generator: &sequence.generator)
            sequence.constraint?.accept(next)
            sequence.output.append(next)
            sequence.pending = [next]
            sequence.finished = sequence.options.stopTokens.contains(next) || sequence.output.count >= sequence.options.maxNewTokens
                || sequence.cache.length + 1 >= sequence.cache.capacity || sequence.constraint?.isComplete == true
            sequences[id] = sequence
            var emission = Emission(sequence: id, token: next, finished: sequence.finished)
            if let count = sequence.options.logprobs { (emission.logprob, emission.topLogprobs) = Self.logprobs(raw, chosen: next, top: count) }
            emitted.append(emission)
        }
        return emitted
    }

    /// The log-softmax of `logits` at `chosen`, and the `top` largest entries.
    static func logprobs(_ logits: [Float], chosen: Int, top: Int) -> (Float, [TokenLogprob]) {
        let largest = logits.max() ?? 0
        var sum = 0.0
        for value in logits { sum += Foundation.exp(Double(value - largest)) }
        let normalizer = Double(largest) + Foundation.log(sum)
        let best = top > 0 ? logits.indices.sorted { logits[$0] > logits[$1] }.prefix(top) : []
        return (Float(Double(logits[chosen]) - normalizer), best.map { TokenLogprob(token: $0, logprob: Float(Double(logits[$0]) - normalizer)) })
    }
}
