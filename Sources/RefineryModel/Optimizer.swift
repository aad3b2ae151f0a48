import CRefineryKernels
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

    static let chunk = 1 << 16

    /// One update of every parameter with learning rate `lr`.
    public func step(_ parameters: [TrainableParameter], learningRate lr: Float) {
        stepCount += 1
        let t = Float(stepCount)
        let correction1 = 1 - Float(pow(Double(beta1), Double(t)))
        let correction2Root = Float(pow(1 - pow(Double(beta2), Double(t)), 0.5))
        let stepSize = lr / correction1
        for parameter in parameters {
            let m = firstMoments[parameter.name] ?? Tensor(zeros: parameter.value.shape)
            let v = secondMoments[parameter.name] ?? Tensor(zeros: parameter.value.shape)
            firstMoments[parameter.name] = m
            secondMoments[parameter.name] = v
            let decay = parameter.decays ? 1 - lr * weightDecay : 1
            let p = SendablePointer(parameter.value.pointer), g = SendablePointer(parameter.gradient.pointer)
            let mp = SendablePointer(m.pointer), vp = SendablePointer(v.pointer)
            let b1 = beta1, b2 = beta2, eps = epsilon
            let count = parameter.value.count
            // Elementwise: chunking cannot change results.
            Parallel.forEach((count + Self.chunk - 1) / Self.chunk, costPerItem: Self.chunk * 8) { chunks in
                let start = chunks.lowerBound * Self.chunk, end = Swift.min(count, chunks.upperBound * Self.chunk)
                rk_adamw(p.pointer + start, g.pointer + start, mp.pointer + start, vp.pointer + start, end - start,
                         decay, b1, b2, eps, stepSize, correction2Root)
            }
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
        var total = 0.0
        for parameter in parameters { total += sumOfSquares(parameter.gradient) }
        let norm = total.squareRoot()
        if let maxNorm, maxNorm > 0 {
            let coefficient = Float(Double(maxNorm) / (norm + 1e-6))
            if coefficient < 1 {
                for parameter in parameters {
                    let g = SendablePointer(parameter.gradient.pointer), count = parameter.gradient.count
                    Parallel.forEach((count + chunk - 1) / chunk, costPerItem: chunk) { chunks in
                        let start = chunks.lowerBound * chunk, end = Swift.min(count, chunks.upperBound * chunk)
                        rk_scale(g.pointer + start, end - start, coefficient)
                    }
                }
            }
        }
        return norm
    }

    static let chunk = 1 << 16

    /// Σ g² in fixed-size chunks added in chunk order: the same bits whatever the thread count.
    static func sumOfSquares(_ tensor: Tensor) -> Double {
        let count = tensor.count
        let chunks = (count + chunk - 1) / chunk
        let partial = UnsafeMutablePointer<Double>.allocate(capacity: max(chunks, 1))
        defer { partial.deallocate() }
        let ps = SendablePointer(partial), xs = SendablePointer(tensor.pointer)
        Parallel.forEach(chunks, costPerItem: chunk) { range in
            for c in range {
                let start = c * chunk
                ps.pointer[c] = rk_sum_squares(xs.pointer + start, Swift.min(count, start + chunk) - start)
            }
        }
        var total = 0.0
        for c in 0..<chunks { total += partial[c] }
        return total
    }
}
