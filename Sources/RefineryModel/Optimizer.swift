import Foundation
import RefineryTensor

/// AdamW as `torch.optim.AdamW` (decoupled weight decay, bias correction), DESIGN §3.6.
public final class AdamW: @unchecked Sendable {
    public let beta1: Float, beta2: Float, epsilon: Float, weightDecay: Float
    /// First and second moments, by parameter name.
    public private(set) var firstMoments: [String: Tensor] = [:]
    public private(set) var secondMoments: [String: Tensor] = [:]
    /// Steps taken.
    public private(set) var stepCount = 0

    public init(beta1: Float = 0.9, beta2: Float = 0.999, epsilon: Float = 1e-8, weightDecay: Float = 0.01) {
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        self.weightDecay = weightDecay
    }

    /// Restores moments and the step count (for `--resume`).
    public func restore(step: Int, first: [String: Tensor], second: [String: Tensor]) {
        stepCount = step
        firstMoments = first
        secondMoments = second
    }

    /// One update of every parameter with learning rate `lr`.
    public func step(_ parameters: [TrainableParameter], learningRate lr: Float) {
        stepCount += 1
        let t = Float(stepCount)
        let correction1 = 1 - Float(pow(Double(beta1), Double(t)))
        let correction2Root = Float(pow(1 - pow(Double(beta2), Double(t)), 0.5))
        let stepSize = lr / correction1
        var values: [SendablePointer<Float>] = [], gradients: [SendablePointer<Float>] = []
        var firsts: [SendablePointer<Float>] = [], seconds: [SendablePointer<Float>] = [], decays: [Float] = []
        for parameter in parameters {
            let m = firstMoments[parameter.name] ?? Tensor(zeros: parameter.value.shape)
            let v = secondMoments[parameter.name] ?? Tensor(zeros: parameter.value.shape)
            firstMoments[parameter.name] = m
            secondMoments[parameter.name] = v
            values.append(SendablePointer(parameter.value.pointer))
            gradients.append(SendablePointer(parameter.gradient.pointer))
            firsts.append(SendablePointer(m.pointer))
            seconds.append(SendablePointer(v.pointer))
            decays.append(parameter.decays ? 1 - lr * weightDecay : 1)
        }
        let (b1, b2, eps) = (beta1, beta2, epsilon)
        let (p, g, m, v, d) = (values, gradients, firsts, seconds, decays)
        // Elementwise: chunking cannot change results.
        TensorChunks(counts: parameters.map(\.value.count)).forEach { _, item in
            let (index, start) = (item.tensor, item.start)
            OptimizerKernels.adamW(parameter: p[index].pointer + start, gradient: g[index].pointer + start,
                                   firstMoment: m[index].pointer + start, secondMoment: v[index].pointer + start, count: item.end - start,
                                   decay: d[index], beta1: b1, beta2: b2, epsilon: eps, stepSize: stepSize, correction2Root: correction2Root)
        }
    }
}

/// Learning-rate schedules as transformers' `get_*_schedule_with_warmup` (DESIGN §3.7).
public enum LearningRateSchedule: String, Sendable, CaseIterable {
    case linear, cosine, constant

    /// The learning rate used by optimizer step `step` (0-based) of `total`.
    public func rate(base: Double, step: Int, warmup: Int, total: Int) -> Double {
        if step < warmup { return base * Double(step) / Double(max(1, warmup)) }
        switch self {
        case .constant: return base
        case .linear: return base * max(0, Double(total - step) / Double(max(1, total - warmup)))
        case .cosine:
            let progress = Double(step - warmup) / Double(max(1, total - warmup))
            return base * max(0, 0.5 * (1 + Foundation.cos(Double.pi * 0.5 * 2 * progress)))
        }
    }
}

/// `torch.nn.utils.clip_grad_norm_`: returns the global L2 norm before clipping and scales the
/// gradients by `max / (norm + 1e-6)` when that is below 1.
public enum GradientClipping {
    public static func clip(_ parameters: [TrainableParameter], maxNorm: Float?) -> Double {
        let gradients = parameters.map { SendablePointer($0.gradient.pointer) }
        let chunks = TensorChunks(counts: parameters.map(\.gradient.count))
        // Σ g² per chunk, then per tensor in chunk order, then over tensors in order: the same
        // bits whatever the thread count.
        let partial = UnsafeMutablePointer<Double>.allocate(capacity: max(chunks.items.count, 1))
        defer { partial.deallocate() }
        let partials = SendablePointer(partial), items = chunks.items
        chunks.forEach { slot, item in
            partials.pointer[slot] = OptimizerKernels.sumOfSquares(gradients[item.tensor].pointer + item.start, count: item.end - item.start)
        }
        var perTensor = [Double](repeating: 0, count: parameters.count)
        for (slot, item) in items.enumerated() { perTensor[item.tensor] += partial[slot] }
        let norm = perTensor.reduce(0, +).squareRoot()
        if let maxNorm, maxNorm > 0 {
            let coefficient = Float(Double(maxNorm) / (norm + 1e-6))
            if coefficient < 1 {
                chunks.forEach { _, item in
                    OptimizerKernels.scale(gradients[item.tensor].pointer + item.start, count: item.end - item.start, by: coefficient)
                }
            }
        }
        return norm
    }
}
