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
    /// With a value, each emitted token carries its log-probability under the model and the
    /// `logprobs` most likely alternatives (0: none).
    public var logprobs: Int?

    public init(maxNewTokens: Int = 64, temperature: Float = 0, topP: Float = 1, topK: Int = 0, seed: UInt64 = 0, stopTokens: Set<Int> = [],
                logprobs: Int? = nil) {
        self.maxNewTokens = maxNewTokens
        self.temperature = temperature
        self.topP = topP
        self.topK = topK
        self.seed = seed
        self.stopTokens = stopTokens
        self.logprobs = logprobs
    }
}

extension LlamaModel {
    /// Continues `prompt` (token ids) and returns the new ids. `onToken` sees each new id as it
    /// is produced and may return false to stop early.
    public func generate(prompt: [Int], options: SamplingOptions, onToken: (Int) -> Bool = { _ in true }) throws -> [Int] {
        let decoder = BatchDecoder(model: self)
        let id = try decoder.add(prompt: prompt, options: options)
        while !decoder.isFinished(id) {
            for emission in try decoder.step() where !onToken(emission.token) { decoder.finish(id) }
        }
        return decoder.output(of: id)
    }

    /// Continues every prompt, decoding up to `batchSize` sequences together (continuous
    /// batching: a finished sequence's place goes to the next prompt at once). Returns the new
    /// ids of each prompt, in order. `onToken(prompt index, id)` sees each new id as it is
    /// produced and may return false to stop that sequence early.
    public func generate(prompts: [(prompt: [Int], options: SamplingOptions)], batchSize: Int,
                         onToken: (Int, Int) -> Bool = { _, _ in true }) throws -> [[Int]] {
        guard batchSize >= 1 else { throw ModelError("the batch size must be ≥ 1") }
        let decoder = BatchDecoder(model: self)
        var outputs = [[Int]](repeating: [], count: prompts.count)
        var promptOf: [Int: Int] = [:]
        var next = 0
        func admit() throws {
            while next < prompts.count && decoder.activeCount < batchSize {
                let id = try decoder.add(prompt: prompts[next].prompt, options: prompts[next].options)
                promptOf[id] = next
                next += 1
            }
        }
        try admit()
        while decoder.activeCount > 0 {
            for emission in try decoder.step() {
                guard let index = promptOf[emission.sequence] else { continue }
                if !onToken(index, emission.token) { decoder.finish(emission.sequence) }
            }
            for (id, index) in promptOf where decoder.isFinished(id) {
                outputs[index] = decoder.output(of: id)
                decoder.remove(id)
                promptOf[id] = nil
            }
            try admit()
        }
        for (id, index) in promptOf { outputs[index] = decoder.output(of: id) }
        return outputs
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
