import Foundation
import RefineryTensor

/// AdamW as `torch.optim.AdamW` (decoupled weight decay, bias correction), DESIGN §3.6 — with
/// float32 moments, or (`eightBit`) bitsandbytes' `AdamW8bit`: moments of every parameter of at
/// least `minimumEightBitCount` values kept in 8-bit blocks (`EightBitMoments`), smaller ones in
/// float32 as bitsandbytes keeps them.
public final class AdamW: @unchecked Sendable {
    /// The hyper-parameters as given (the 8-bit path, like bitsandbytes, derives `1 − β` and
    /// `−lr / c1` from them in double and rounds once; the float32 path uses them in float32).
    public let beta1: Double, beta2: Double, epsilon: Double, weightDecay: Double
    /// Whether large parameters keep 8-bit moments.
    public let eightBit: Bool
    /// bitsandbytes' `min_8bit_size`: smaller parameters keep float32 moments.
    public static let minimumEightBitCount = 4096
    /// Float32 first and second moments, by parameter name.
    public private(set) var firstMoments: [String: Tensor] = [:]
    public private(set) var secondMoments: [String: Tensor] = [:]
    /// 8-bit moments, by parameter name.
    public private(set) var eightBitMoments: [String: EightBitMoments] = [:]
    /// Steps taken.
    public private(set) var stepCount = 0

    public init(beta1: Double = 0.9, beta2: Double = 0.999, epsilon: Double = 1e-8, weightDecay: Double = 0.01, eightBit: Bool = false) {
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        self.weightDecay = weightDecay
        self.eightBit = eightBit
    }

    /// Whether a parameter of `count` values keeps 8-bit moments here.
    public func keepsEightBit(count: Int) -> Bool { eightBit && count >= Self.minimumEightBitCount }

    /// One update of every parameter with learning rate `learningRate`.
    public func step(_ parameters: [TrainableParameter], learningRate: Double) {
        stepCount += 1
        let t = Double(stepCount), lr = Float(learningRate)
        let (beta1, beta2, epsilon, weightDecay) = (Float(self.beta1), Float(self.beta2), Float(self.epsilon), Float(self.weightDecay))
        let correction1 = 1 - Float(pow(self.beta1, t))
        let correction2Root = Float(pow(1 - pow(self.beta2, t), 0.5))
        let stepSize = lr / correction1
        // torch and bitsandbytes compute 1 − β in double and round once; bitsandbytes also −lr / c1 and 1 − lr·wd.
        let negativeStepSize = Float(-learningRate / (1 - pow(self.beta1, t)))
        let eightBitDecay = Float(1 - learningRate * self.weightDecay)
        let (oneMinusBeta1, oneMinusBeta2) = (Float(1 - self.beta1), Float(1 - self.beta2))
        var values: [SendablePointer<Float>] = [], gradients: [SendablePointer<Float>] = []
        var firsts: [SendablePointer<Float>?] = [], seconds: [SendablePointer<Float>?] = [], decays: [Float] = []
        var quantized: [EightBitMoments?] = []
        for parameter in parameters {
            values.append(SendablePointer(parameter.value.pointer))
            gradients.append(SendablePointer(parameter.gradient.pointer))
            if keepsEightBit(count: parameter.value.count) {
                let moments = eightBitMoments[parameter.name] ?? EightBitMoments(count: parameter.value.count)
                eightBitMoments[parameter.name] = moments
                quantized.append(moments)
                firsts.append(nil)
                seconds.append(nil)
                decays.append(parameter.decays ? eightBitDecay : 1)
            } else {
                let m = firstMoments[parameter.name] ?? Tensor(zeros: parameter.value.shape)
                let v = secondMoments[parameter.name] ?? Tensor(zeros: parameter.value.shape)
                firstMoments[parameter.name] = m
                secondMoments[parameter.name] = v
                quantized.append(nil)
                firsts.append(SendablePointer(m.pointer))
                seconds.append(SendablePointer(v.pointer))
                decays.append(parameter.decays ? 1 - lr * weightDecay : 1)
            }
        }
        let (b1, b2, eps) = (beta1, beta2, epsilon)
        let (p, g, m, v, d, q) = (values, gradients, firsts, seconds, decays, quantized)
        // Elementwise, and blockwise on chunk bounds that are multiples of 256: chunking cannot change results.
        TensorChunks(counts: parameters.map(\.value.count)).forEach { _, item in
            let (index, start) = (item.tensor, item.start)
            if let moments = q[index] {
                moments.update(parameter: p[index].pointer, gradient: g[index].pointer, range: start..<item.end, decay: d[index],
                               beta1: b1, beta2: b2, oneMinusBeta1: oneMinusBeta1, oneMinusBeta2: oneMinusBeta2, epsilon: eps,
                               negativeStepSize: negativeStepSize, correction2Root: correction2Root)
            } else if let first = m[index], let second = v[index] {
                OptimizerKernels.adamW(parameter: p[index].pointer + start, gradient: g[index].pointer + start,
                                       firstMoment: first.pointer + start, secondMoment: second.pointer + start, count: item.end - start,
                                       decay: d[index], beta1: b1, beta2: b2, oneMinusBeta1: oneMinusBeta1, oneMinusBeta2: oneMinusBeta2,
                                       epsilon: eps, stepSize: stepSize, correction2Root: correction2Root)
            }
        }
    }

    // MARK: State as named entries (checkpoint files and the cluster's state)

    /// The moments as named entries: float32 moments as "m/NAME" and "v/NAME"; 8-bit ones as
    /// "m8/NAME" and "v8/NAME" (codes, U8) with "m8_absmax/NAME" and "v8_absmax/NAME" (F32), by name.
    public func stateEntries() -> [OptimizerStateEntry] {
        var entries: [OptimizerStateEntry] = []
        for (name, tensor) in firstMoments { entries.append(.init(name: "m/" + name, floats: tensor)) }
        for (name, tensor) in secondMoments { entries.append(.init(name: "v/" + name, floats: tensor)) }
        for (name, moments) in eightBitMoments {
            let parts = moments.parts
            entries.append(.init(name: "m8/" + name, codes: parts.firstCodes))
            entries.append(.init(name: "m8_absmax/" + name, floats: parts.firstScales))
            entries.append(.init(name: "v8/" + name, codes: parts.secondCodes))
            entries.append(.init(name: "v8_absmax/" + name, floats: parts.secondScales))
        }
        return entries.sorted { $0.name < $1.name }
    }

    /// Restores the step count and the moments `stateEntries()` saved (`bytes` by entry name) for
    /// `parameters`; refuses moments of the other kind than this optimizer keeps for a parameter
    /// (a run resumed with a different `--optimizer`) and any size that does not fit.
    public func restore(step: Int, bytes: [String: [UInt8]], parameters: [TrainableParameter]) throws {
        var first: [String: Tensor] = [:], second: [String: Tensor] = [:], quantized: [String: EightBitMoments] = [:]
        for parameter in parameters {
            let name = parameter.name, count = parameter.value.count
            let hasFloat = bytes["m/" + name] != nil || bytes["v/" + name] != nil
            let hasEightBit = bytes["m8/" + name] != nil || bytes["v8/" + name] != nil
            if keepsEightBit(count: count) {
                guard !hasFloat else {
                    throw ModelError("the saved optimizer state holds float32 moments for \(name), but this run keeps 8-bit moments "
                                     + "(--optimizer adamw-8bit): resume with the optimizer the run started with (--optimizer adamw)")
                }
                guard hasEightBit else { continue }
                func part<T: BitwiseCopyable>(_ key: String, as type: T.Type) throws -> [T] {
                    guard let raw = bytes[key + name] else { throw ModelError("the saved optimizer state lacks \(key)\(name)") }
                    return try RawValues.decode(raw, as: type, name: key + name)
                }
                do {
                    quantized[name] = try EightBitMoments(count: count, firstCodes: try part("m8/", as: UInt8.self),
                                                          firstScales: try part("m8_absmax/", as: Float.self),
                                                          secondCodes: try part("v8/", as: UInt8.self),
                                                          secondScales: try part("v8_absmax/", as: Float.self))
                } catch let error as TensorError {
                    throw ModelError("the saved optimizer state does not fit \(name): \(error.description)")
                }
            } else {
                guard !hasEightBit else {
                    throw ModelError("the saved optimizer state holds 8-bit moments for \(name), but this run keeps float32 moments: "
                                     + "resume with the optimizer the run started with (--optimizer adamw-8bit)")
                }
                func moment(_ key: String) throws -> Tensor? {
                    guard let raw = bytes[key + name] else { return nil }
                    let values = try RawValues.decode(raw, as: Float.self, name: key + name)
                    guard values.count == count else {
                        throw ModelError("the saved training state does not match this run: \(key)\(name) has \(values.count) values, expected \(count)")
                    }
                    let tensor = Tensor(zeros: parameter.value.shape)
                    tensor.pointer.update(from: values, count: count)
                    return tensor
                }
                first[name] = try moment("m/")
                second[name] = try moment("v/")
            }
        }
        stepCount = step
        firstMoments = first
        secondMoments = second
        eightBitMoments = quantized
    }
}

/// One named part of the optimizer's state: its safetensors type, shape and little-endian bytes.
public struct OptimizerStateEntry: Sendable {
    public let name: String
    public let dtype: SafetensorsDType
    public let shape: [Int]
    public let bytes: [UInt8]

    init(name: String, floats tensor: Tensor) {
        self.init(name: name, floats: Array(UnsafeBufferPointer(start: tensor.pointer, count: tensor.count)), shape: tensor.shape)
    }

    init(name: String, floats: [Float], shape: [Int]? = nil) {
        self.name = name
        dtype = .f32
        self.shape = shape ?? [floats.count]
        bytes = floats.withUnsafeBytes { Array($0) }
    }

    init(name: String, codes: [UInt8]) {
        self.name = name
        dtype = .u8
        shape = [codes.count]
        bytes = codes
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
