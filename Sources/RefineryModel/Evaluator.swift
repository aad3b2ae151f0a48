import Foundation
import RefineryTensor
import RefineryText

/// The masked, token-weighted loss of a dataset (DESIGN §3.2–3.3).
public struct EvaluationResult: Sendable, Equatable {
    /// Σ cross-entropy over trained tokens ÷ number of trained tokens.
    public var loss: Double
    /// Trained tokens.
    public var tokens: Int
    /// Samples evaluated.
    public var samples: Int
    /// Samples cut to the maximum length.
    public var truncated: Int
    /// Σ cross-entropy (nats), for combining results.
    public var lossSum: Double
}

/// Scores encoded samples with a model.
public struct Evaluator: Sendable {
    public let model: LlamaModel

    public init(model: LlamaModel) { self.model = model }

    /// Sum of cross-entropies over the trained tokens of one sample, and their count.
    public func lossSum(of sample: EncodedSample) throws -> (sum: Double, tokens: Int) {
        let targets = (1..<max(sample.ids.count, 1)).filter { sample.trained[$0] }
        if targets.isEmpty { return (0, 0) }
        let hidden = try model.hiddenStates(tokens: sample.ids)
        let logits = model.logits(hidden: hidden, rows: targets.map { $0 - 1 })
        let vocab = model.config.vocabSize
        var sum = 0.0
        for (row, target) in targets.enumerated() {
            sum += Kernels.crossEntropy(logits.pointer + row * vocab, vocab: vocab, target: sample.ids[target])
        }
        return (sum, targets.count)
    }

    /// Evaluates `samples` with a LoRA adapter applied (unmerged, exactly as in training).
    public func evaluate(_ samples: [EncodedSample], adapter: LoRAAdapter, progress: (Int, Int) -> Void = { _, _ in }) throws -> EvaluationResult {
        let engine = try GradientEngine(model: model, adapter: adapter, trainsBase: false)
        var sum = 0.0
        var tokens = 0
        for (index, sample) in samples.enumerated() {
            let (s, n) = try engine.loss(TrainingSequence(ids: sample.ids, trained: sample.trained))
            sum += s
            tokens += n
            progress(index + 1, samples.count)
        }
        return EvaluationResult(loss: tokens > 0 ? sum / Double(tokens) : .nan, tokens: tokens, samples: samples.count,
                                truncated: samples.filter(\.truncated).count, lossSum: sum)
    }

    /// Evaluates `samples`, calling `progress(done, total)` after each.
    public func evaluate(_ samples: [EncodedSample], progress: (Int, Int) -> Void = { _, _ in }) throws -> EvaluationResult {
        var sum = 0.0
        var tokens = 0
        for (index, sample) in samples.enumerated() {
            let (s, n) = try lossSum(of: sample)
            sum += s
            tokens += n
            progress(index + 1, samples.count)
        }
        return EvaluationResult(loss: tokens > 0 ? sum / Double(tokens) : .nan, tokens: tokens, samples: samples.count,
                                truncated: samples.filter(\.truncated).count, lossSum: sum)
    }
}
