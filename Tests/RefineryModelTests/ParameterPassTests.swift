import Foundation
import Testing
@testable import RefineryModel
import RefineryTensor

/// The passes over every trainable parameter (zeroing, clipping, AdamW) that run as one parallel
/// job over fixed-size chunks of all tensors.
@Suite struct ParameterPassTests {
    /// Tensors of mixed sizes: many small ones (a LoRA adapter) and some spanning several chunks.
    static func parameters() -> [TrainableParameter] {
        let sizes = [3, 70_000, 10, 200_000, 65_536, 1, 131_073] + Array(repeating: 96, count: 40)
        var state: UInt64 = 7
        return sizes.enumerated().map { index, size in
            let value = Tensor(zeros: [size]), parameter = TrainableParameter(name: "p\(index).weight", value: value)
            for i in 0..<size {
                state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                parameter.gradient.pointer[i] = Float(Double(state >> 40) / Double(1 << 24)) - 0.5
                value.pointer[i] = Float(i % 13) * 0.01
            }
            return parameter
        }
    }

    @Test func chunksCoverEveryElementOnce() {
        let counts = [0, 3, 65_536, 65_537, 200_000]
        let chunks = TensorChunks(counts: counts)
        var covered = counts.map { [Int](repeating: 0, count: $0) }
        for item in chunks.items {
            #expect(item.end - item.start <= TensorChunks.size)
            for i in item.start..<item.end { covered[item.tensor][i] += 1 }
        }
        #expect(covered.allSatisfy { $0.allSatisfy { $0 == 1 } })
    }

    @Test func clippingMatchesDoubleReferenceAndScalesEveryGradient() {
        let parameters = Self.parameters()
        let before = parameters.map(\.gradient.array)
        let expected = before.joined().reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
        let norm = GradientClipping.clip(parameters, maxNorm: 1)
        #expect(abs(norm - expected) / expected < 1e-9)
        let coefficient = Float(1 / (expected + 1e-6))
        for (parameter, old) in zip(parameters, before) {
            let new = parameter.gradient.array
            for i in old.indices { #expect(abs(new[i] - old[i] * coefficient) <= 1e-6 * abs(old[i]) + 1e-12) }
        }
        #expect(abs(GradientClipping.clip(parameters, maxNorm: nil) - 1) < 1e-5)
    }

    @Test func adamWUpdatesEveryElementLikeTheScalarFormula() {
        let parameters = Self.parameters()
        let values = parameters.map(\.value.array), gradients = parameters.map(\.gradient.array)
        let optimizer = AdamW()
        optimizer.step(parameters, learningRate: 1e-2)
        // First step: m = (1−β1)g, v = (1−β2)g², p ← p·(1 − lr·wd) − lr·m̂/(√v̂ + ε) with m̂ = g, √v̂ = |g|.
        for (index, parameter) in parameters.enumerated() {
            let updated = parameter.value.array
            for i in updated.indices {
                let g = Double(gradients[index][i]), p = Double(values[index][i])
                let reference = p * (1 - 1e-2 * 0.01) - 1e-2 * g / (abs(g) + 1e-8)
                #expect(abs(Double(updated[i]) - reference) < 1e-6, "tensor \(index) element \(i)")
            }
        }
    }

    @Test func zeroingClearsEveryGradient() throws {
        let model = try LlamaModel(directory: ModelFixtures.directory("llama-gqa"))
        let adapter = try LoRAAdapter.initialize(model: model.config, config: LoRAConfig(rank: 4, alpha: 8, dropout: 0, targets: .allLinear), seed: 1)
        let engine = try GradientEngine(model: model, adapter: adapter, trainsBase: true)
        for parameter in engine.parameters { parameter.gradient.pointer.update(repeating: 1, count: parameter.gradient.count) }
        engine.zeroGradients()
        #expect(engine.parameters.allSatisfy { $0.gradient.array.allSatisfy { $0 == 0 } })
    }
}
