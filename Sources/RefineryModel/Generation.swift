import Foundation
import RefineryCore
import RefineryTensor

/// How `generate` picks tokens. Temperature 0 means greedy.
public struct SamplingOptions: Sendable {
    public var maxNewTokens: Int
    public var temperature: Float
    public var topP: Float
    public var topK: Int
    public var seed: UInt64
    /// Generation stops after emitting one of these (EOS, end-of-turn).
    public var stopTokens: Set<Int>

    public init(maxNewTokens: Int = 64, temperature: Float = 0, topP: Float = 1, topK: Int = 0, seed: UInt64 = 0, stopTokens: Set<Int> = []) {
        self.maxNewTokens = maxNewTokens
        self.temperature = temperature
        self.topP = topP
        self.topK = topK
        self.seed = seed
        self.stopTokens = stopTokens
    }
}

extension LlamaModel {
    /// Continues `prompt` (token ids) and returns the new ids. `onToken` sees each new id as it
    /// is produced and may return false to stop early.
    public func generate(prompt: [Int], options: SamplingOptions, onToken: (Int) -> Bool = { _ in true }) throws -> [Int] {
        guard !prompt.isEmpty else { throw ModelError("the prompt is empty: give at least one token (or a tokenizer that adds BOS)") }
        guard options.maxNewTokens >= 0 else { throw ModelError("max new tokens must be ≥ 0") }
        let cache = makeCache(capacity: prompt.count + options.maxNewTokens)
        var generator = SplitMix64(seed: options.seed)
        var hidden = try hiddenStates(tokens: prompt, cache: cache)
        var lastRow = prompt.count - 1
        var output: [Int] = []
        for _ in 0..<options.maxNewTokens {
            let logits = self.logits(hidden: hidden, rows: [lastRow])
            let next = Sampler.pick(Array(UnsafeBufferPointer(start: logits.pointer, count: config.vocabSize)),
                                    options: options, generator: &generator)
            output.append(next)
            if !onToken(next) || options.stopTokens.contains(next) { break }
            hidden = try hiddenStates(tokens: [next], cache: cache)
            lastRow = 0
        }
        return output
    }
}

/// Token selection from one row of logits: greedy, or temperature → top-k → top-p sampling
/// (the order of transformers' logits warpers).
public enum Sampler {
    public static func pick<G: RandomNumberGenerator>(_ logits: [Float], options: SamplingOptions, generator: inout G) -> Int {
        if options.temperature <= 0 {
            var best = 0
            for i in 1..<logits.count where logits[i] > logits[best] { best = i }
            return best
        }
        var candidates = logits.enumerated().map { ($0.offset, $0.element / options.temperature) }
        candidates.sort { $0.1 > $1.1 }
        if options.topK > 0 && options.topK < candidates.count { candidates.removeSubrange(options.topK...) }
        let maxLogit = candidates[0].1
        var probabilities = candidates.map { Double(Foundation.exp($0.1 - maxLogit)) }
        let total = probabilities.reduce(0, +)
        probabilities = probabilities.map { $0 / total }
        if options.topP < 1 {
            var cumulative = 0.0
            var keep = 0
            for p in probabilities {
                keep += 1
                cumulative += p
                if cumulative >= Double(options.topP) { break }
            }
            candidates = Array(candidates.prefix(keep))
            probabilities = Array(probabilities.prefix(keep))
            let sum = probabilities.reduce(0, +)
            probabilities = probabilities.map { $0 / sum }
        }
        let r = Double(generator.next() >> 11) / Double(1 << 53)
        var cumulative = 0.0
        for (candidate, p) in zip(candidates, probabilities) {
            cumulative += p
            if r < cumulative { return candidate.0 }
        }
        return candidates[candidates.count - 1].0
    }
}
