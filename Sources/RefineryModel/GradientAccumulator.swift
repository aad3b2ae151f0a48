import Foundation
import RefineryTensor

/// One micro-batch of an optimizer step: its sequences and their LoRA-dropout seeds, fixed by
/// (seed, step, micro-batch, slot) alone (DESIGN §3.9).
public struct MicroBatchWork: Sendable, Equatable {
    public let step: Int
    public let micro: Int
    public let sequences: [TrainingSequence]
    public let dropoutSeeds: [UInt64]

    public init(step: Int, micro: Int, sequences: [TrainingSequence], dropoutSeeds: [UInt64]) {
        self.step = step
        self.micro = micro
        self.sequences = sequences
        self.dropoutSeeds = dropoutSeeds
    }

    /// Tokens that carry loss.
    public var tokens: Int { sequences.map(\.labelCount).reduce(0, +) }
}

/// Adds the summed gradients of a step's micro-batches in micro-batch order, then scales the
/// total by 1 / (the step's trained tokens) (DESIGN §3.3, §3.9). One machine and the cluster's
/// coordinator both reduce through it, so their results are the same bits.
public final class GradientAccumulator: @unchecked Sendable {
    /// Floats over all trainable parameters, in engine order.
    public let count: Int
    private let sum: UnsafeMutablePointer<Float>

    public init(parameters: [TrainableParameter]) {
        count = parameters.map(\.gradient.count).reduce(0, +)
        sum = .allocate(capacity: max(count, 1))
        sum.initialize(repeating: 0, count: max(count, 1))
    }

    deinit { sum.deallocate() }

    public func reset() { sum.update(repeating: 0, count: count) }

    /// `sum += values` (values: `count` floats in engine order).
    public func add(_ values: UnsafePointer<Float>) {
        let s = SendablePointer(sum), v = SendablePointer(UnsafeMutablePointer(mutating: values)), n = count
        let chunk = 1 << 16
        Parallel.forEach((n + chunk - 1) / chunk, costPerItem: chunk) { range in
            let start = range.lowerBound * chunk, end = Swift.min(n, range.upperBound * chunk)
            for i in start..<end { s.pointer[i] += v.pointer[i] }
        }
    }

    /// `sum +=` the gradients the engine holds now.
    public func addGradients(of parameters: [TrainableParameter]) {
        var offset = 0
        for parameter in parameters {
            let n = parameter.gradient.count
            let s = sum + offset, g = parameter.gradient.pointer
            for i in 0..<n { s[i] += g[i] }
            offset += n
        }
    }

    /// Sets each parameter's gradient to `sum · scale`.
    public func store(into parameters: [TrainableParameter], scale: Float) {
        var offset = 0
        for parameter in parameters {
            let n = parameter.gradient.count
            let s = sum + offset, g = parameter.gradient.pointer
            for i in 0..<n { g[i] = s[i] * scale }
            offset += n
        }
    }
}

extension GradientEngine {
    /// The summed (unscaled) gradient of one micro-batch, left in the parameters' gradients;
    /// returns the summed loss and the trained tokens.
    public func microBatchGradient(_ work: MicroBatchWork) throws -> (lossSum: Double, tokens: Int) {
        guard work.dropoutSeeds.count == work.sequences.count else {
            throw ModelError("a micro-batch of \(work.sequences.count) sequences came with \(work.dropoutSeeds.count) dropout seeds")
        }
        zeroGradients()
        var lossSum = 0.0
        for (sequence, seed) in zip(work.sequences, work.dropoutSeeds) {
            dropoutSeed = seed
            lossSum += try accumulate(sequence, scale: 1).lossSum
        }
        return (lossSum, work.tokens)
    }

    /// Floats over all trainable parameters.
    public var gradientCount: Int { parameters.map(\.gradient.count).reduce(0, +) }

    /// The parameters' gradients, concatenated in engine order, as little-endian float32 bytes.
    public func gradientBytes() -> Data {
        var data = Data(capacity: gradientCount * 4)
        for parameter in parameters { data.append(UnsafeBufferPointer(start: parameter.gradient.pointer, count: parameter.gradient.count)) }
        return data
    }

    /// The parameters' values, concatenated in engine order, as little-endian float32 bytes.
    public func parameterBytes() -> Data {
        var data = Data(capacity: gradientCount * 4)
        for parameter in parameters { data.append(UnsafeBufferPointer(start: parameter.value.pointer, count: parameter.value.count)) }
        return data
    }

    /// Overwrites the parameters' values from `parameterBytes()` of an engine of the same shapes.
    public func loadParameterBytes(_ data: Data) throws {
        guard data.count == gradientCount * 4 else {
            throw ModelError("parameters of \(data.count / 4) floats do not fit this engine's \(gradientCount); are both sides training the same model and method?")
        }
        data.withUnsafeBytes { raw in
            guard let base = raw.baseAddress else { return }
            var offset = 0
            for parameter in parameters {
                memcpy(parameter.value.pointer, base + offset, parameter.value.count * 4)
                offset += parameter.value.count * 4
            }
        }
        parametersChanged()
    }
}
