import Foundation
import RefineryCore
import RefineryTensor

/// Computes gradients of the summed token cross-entropy of sequences with respect to the
/// trainable parameters (LoRA A/B, or every weight for full fine-tuning). Explicit forward and
/// backward per layer; frozen weights' gradients are never computed.
public final class GradientEngine: @unchecked Sendable {
    public let model: LlamaModel
    public let adapter: LoRAAdapter?
    /// Full fine-tuning: every base tensor trains.
    public let trainsBase: Bool
    /// Keep only each layer's input and recompute the layer in the backward pass.
    public let checkpointing: Bool
    /// Trainable parameters, sorted by name.
    public let parameters: [TrainableParameter]
    private let gradients: [String: Tensor]

    /// A training process keeps the memory it frees (glibc's mmap and trim thresholds raised):
    /// every step allocates the same activation sizes again, and fresh pages from the kernel cost a
    /// page fault and a zeroing each — about 10% of a LoRA step on the SmolLM2-135M shape.
    private static let retainsFreedMemory: Bool = OptimizerKernels.retainFreedMemory()

    public init(model: LlamaModel, adapter: LoRAAdapter?, trainsBase: Bool, checkpointing: Bool = false) throws {
        _ = Self.retainsFreedMemory
        guard adapter != nil || trainsBase else { throw ModelError("nothing to train: give a LoRA adapter or full fine-tuning") }
        self.model = model
        self.adapter = adapter
        self.trainsBase = trainsBase
        self.checkpointing = checkpointing
        var parameters: [TrainableParameter] = []
        if let adapter {
            for (name, pair) in adapter.pairs {
                parameters.append(TrainableParameter(name: LoRAAdapter.peftPrefix + name + ".lora_A.weight", value: pair.a))
                parameters.append(TrainableParameter(name: LoRAAdapter.peftPrefix + name + ".lora_B.weight", value: pair.b))
            }
        }
        if trainsBase {
            guard model.keepsFloatWeights else {
                throw ModelError("full fine-tuning in \(model.dtype.rawValue) needs float32 master weights: load the model with keepFloatWeights (the trainer does)")
            }
            for (name, tensor) in model.namedWeights() { parameters.append(TrainableParameter(name: name, value: tensor)) }
        }
        parameters.sort { $0.name < $1.name }
        self.parameters = parameters
        gradients = Dictionary(uniqueKeysWithValues: parameters.map { ($0.name, $0.gradient) })
    }

    /// Sets every gradient to zero.
    public func zeroGradients() {
        let gradients = parameters.map { SendablePointer($0.gradient.pointer) }
        TensorChunks(counts: parameters.map(\.gradient.count)).forEach { _, item in
            (gradients[item.tensor].pointer + item.start).update(repeating: 0, count: item.end - item.start)
        }
    }

    private func grad(_ name: String) -> Tensor? { gradients[name] }

    /// The float32 master weights changed (an optimizer step, a restore, new values from the
    /// coordinator): a bfloat16 model rounds them into the copies its products read before the
    /// next pass. Parameters changed outside the engine must be announced here.
    public func parametersChanged() {
        if trainsBase && model.dtype == .bfloat16 { computeCopiesStale = true }
    }

    private var computeCopiesStale = false

    private func refreshComputeCopies() {
        guard computeCopiesStale else { return }
        model.refreshBFloat16Copies()
        computeCopiesStale = false
    }

    /// Seed of the LoRA dropout masks of the next `accumulate` call; the trainer sets it from
    /// (seed, step, micro-batch) so results never depend on scheduling.
    public var dropoutSeed: UInt64 = 0
    /// Dropout applies only while computing gradients.
    private var dropoutActive = false

    /// `(x ⊙ mask, mask)`, the mask 0 or 1/(1 − p), drawn from (dropoutSeed, layer, slot).
    private func droppedInput(_ x: Tensor, layer: Int, slot: LinearSlot) -> (dropped: Tensor, mask: Tensor)? {
        guard dropoutActive, let p = adapter?.config.dropout, p > 0 else { return nil }
        let slotIndex = UInt64(LinearSlot.allCases.firstIndex(of: slot) ?? 0)
        var generator = SplitMix64(seed: dropoutSeed &* 0x9E37_79B9_7F4A_7C15 &+ UInt64(layer) &* 31 &+ slotIndex)
        let keep = Float(1 / (1 - p))
        let threshold = UInt64((p * Double(1 << 53)).rounded())
        let result = Tensor(zeros: x.shape), mask = Tensor(zeros: x.shape)
        for i in 0..<x.count {
            mask.pointer[i] = (generator.next() >> 11) < threshold ? 0 : keep
            result.pointer[i] = x.pointer[i] * mask.pointer[i]
        }
        return (result, mask)
    }

    private func loraGrads(layer: Int, slot: LinearSlot) -> (Tensor, Tensor)? {
        let base = LoRAAdapter.peftPrefix + LoRAAdapter.moduleName(layer: layer, slot: slot)
        guard let a = gradients[base + ".lora_A.weight"], let b = gradients[base + ".lora_B.weight"] else { return nil }
        return (a, b)
    }

    // MARK: Forward

    /// `out (+)= x·Wᵀ + b + s·(dropout(x)·Aᵀ)·Bᵀ`; returns `(dropout(x)·Aᵀ, dropout(x))` when the slot is adapted.
    private func linear(_ x: Tensor, rows: Int, layer: Int, slot: LinearSlot, into out: Tensor, accumulate: Bool) -> LowRankTrace? {
        model.baseProjection(x, rows: rows, layer: layer, slot: slot, into: out, accumulate: accumulate)
        let (outFeatures, inFeatures) = slot.shape(model.config)
        guard let pair = adapter?.pair(layer: layer, slot: slot) else { return nil }
        let r = pair.a.shape[0]
        let dropped = droppedInput(x, layer: layer, slot: slot)
        // u = dropout(x)·Aᵀ, stored [rows, padded rank]; out += s·u·Bᵀ
        let width = LowRank.paddedRank(r)
        let aT = Tensor(zeros: [inFeatures, width])
        LowRank.transpose(pair.a.pointer, rows: r, cols: inFeatures, into: aT.pointer, ldd: width)
        let u = Tensor(uninitialized: [rows, width])
        LowRank.multiply((dropped?.dropped ?? x).pointer, ldu: inFeatures, aT.pointer, ldm: width, into: u.pointer, ldy: width,
                         rows: rows, cols: width, inner: inFeatures, accumulate: false)
        let bT = Tensor(zeros: [r, outFeatures])
        LowRank.transpose(pair.b.pointer, rows: outFeatures, cols: r, into: bT.pointer, ldd: outFeatures)
        LowRank.multiply(u.pointer, ldu: width, bT.pointer, ldm: outFeatures, into: out.pointer, ldy: outFeatures,
                         rows: rows, cols: outFeatures, inner: r, alpha: adapter?.config.scaling ?? 1, accumulate: true)
        return (u, dropped)
    }

    /// The model's layer forward with this engine's projections (base weights plus the adapter).
    private func forwardLayer(_ index: Int, x: Tensor, cos: Tensor, sin: Tensor, keyStart: [Int]?, mode: LayerForwardMode) -> (Tensor, LayerActivations?) {
        model.forwardLayer(index, x: x, cos: cos, sin: sin, keyStart: keyStart, mode: mode) { x, rows, layer, slot, out, accumulate in
            self.linear(x, rows: rows, layer: layer, slot: slot, into: out, accumulate: accumulate)
        }
    }

    // MARK: Backward

    /// Given `dy` of a projection's output, writes or adds `dx`, and accumulates weight, bias and LoRA gradients.
    /// `dx == nil`: the input's gradient is not needed (the first layer when embeddings are frozen).
    private func linearBackward(_ dy: Tensor, x: Tensor, saved: LayerActivations, rows: Int, layer index: Int, slot: LinearSlot,
                                dx: Tensor?, accumulate: Bool) {
        let u = saved.loraU[slot]
        let dropped = saved.loraX[slot]
        let (w, b) = model.layers[index].weights(slot)
        let (outFeatures, inFeatures) = (w.shape[0], w.shape[1])
        if let dx {
            BLAS.linearInputGradient(dy.pointer, rows: rows, weight: w, into: dx.pointer, accumulate: accumulate)
        }
        if trainsBase {
            let prefix = "model.layers.\(index).\(slot.rawValue)"
            if let dW = grad(prefix + ".weight") {
                BLAS.addLinearWeightGradient(dy.pointer, x: x.pointer, rows: rows, outFeatures: outFeatures, inFeatures: inFeatures,
                                             dtype: model.dtype, into: dW.pointer)
            }
            if b != nil, let dB = grad(prefix + ".bias") {
                BackwardKernels.addColumnSums(dy.pointer, rows: rows, cols: outFeatures, into: dB.pointer)
            }
        }
        if let pair = adapter?.pair(layer: index, slot: slot), let u, let (dA, dB) = loraGrads(layer: index, slot: slot) {
            let r = pair.a.shape[0]
            let s = adapter?.config.scaling ?? 1
            // v = s·dy·B, stored [rows, padded rank] like u
            let width = LowRank.paddedRank(r)
            let b = Tensor(zeros: [outFeatures, width])
            LowRank.copy(pair.b.pointer, rows: outFeatures, cols: r, into: b.pointer, ldd: width)
            let v = Tensor(uninitialized: [rows, width])
            LowRank.multiply(dy.pointer, ldu: outFeatures, b.pointer, ldm: width, into: v.pointer, ldy: width,
                             rows: rows, cols: width, inner: outFeatures, alpha: s, accumulate: false)
            // dx += (v·A) ⊙ mask/(1−p) ; dA += vᵀ·dropout(x) ; dB += s·dyᵀ·u
            if let dx, let dropped {
                let through = Tensor(zeros: [rows, inFeatures])
                LowRank.multiply(v.pointer, ldu: width, pair.a.pointer, ldm: inFeatures, into: through.pointer, ldy: inFeatures,
                                 rows: rows, cols: inFeatures, inner: r, accumulate: false)
                for i in 0..<through.count { dx.pointer[i] += through.pointer[i] * dropped.mask.pointer[i] }
            } else if let dx {
                LowRank.multiply(v.pointer, ldu: width, pair.a.pointer, ldm: inFeatures, into: dx.pointer, ldy: inFeatures,
                                 rows: rows, cols: inFeatures, inner: r, accumulate: true)
            }
            LowRank.gram(v.pointer, ldp: width, (dropped?.dropped ?? x).pointer, ldq: inFeatures, into: dA.pointer, ldc: inFeatures,
                         depth: rows, rank: r, cols: inFeatures)
            // dBᵀ = s·uᵀ·dy, added to dB [out, r]
            let dBT = Tensor(zeros: [r, outFeatures])
            LowRank.gram(u.pointer, ldp: width, dy.pointer, ldq: outFeatures, into: dBT.pointer, ldc: outFeatures,
                         depth: rows, rank: r, cols: outFeatures, alpha: s)
            for o in 0..<outFeatures {
                for j in 0..<r { dB.pointer[o * r + j] += dBT.pointer[j * outFeatures + o] }
            }
        }
    }

    /// Backward of one layer: `dOut` is the gradient of the layer's output; returns that of its input.
    private func backwardLayer(_ index: Int, _ a: LayerActivations, dOut: Tensor, cos: Tensor, sin: Tensor, keyStart: [Int]?) -> Tensor {
        let c = model.config
        let t = dOut.shape[0], h = c.hiddenSize
        let layer = model.layers[index]
        let prefix = "model.layers.\(index)."
        // MLP
        let dAct = Tensor(uninitialized: [t, c.intermediateSize])
        linearBackward(dOut, x: a.act, saved: a, rows: t, layer: index, slot: .down, dx: dAct, accumulate: false)
        let dGate = Tensor(uninitialized: [t, c.intermediateSize]), dUp = Tensor(uninitialized: [t, c.intermediateSize])
        BackwardKernels.siluGate(gate: a.gate.pointer, up: a.up.pointer, dAct: dAct.pointer, count: dAct.count,
                                 dGate: dGate.pointer, dUp: dUp.pointer)
        let dNormed2 = Tensor(uninitialized: [t, h])
        linearBackward(dGate, x: a.normed2, saved: a, rows: t, layer: index, slot: .gate, dx: dNormed2, accumulate: false)
        linearBackward(dUp, x: a.normed2, saved: a, rows: t, layer: index, slot: .up, dx: dNormed2, accumulate: true)
        let dXMid = Tensor(uninitialized: [t, h])
        BackwardKernels.rmsNorm(x: a.xMid.pointer, weight: layer.postAttentionNorm.pointer, inverseRMS: a.inverseRMS2.pointer,
                                dy: dNormed2.pointer, rows: t, dim: h, dx: dXMid.pointer,
                                dWeight: trainsBase ? grad(prefix + "post_attention_layernorm.weight")?.pointer : nil)
        Kernels.add(dXMid.pointer, dOut.pointer, count: dXMid.count)
        // Attention
        let dAttention = Tensor(uninitialized: [t, c.qDim])
        linearBackward(dXMid, x: a.attention, saved: a, rows: t, layer: index, slot: .o, dx: dAttention, accumulate: false)
        let dQ = Tensor(uninitialized: [t, c.qDim]), dK = Tensor(uninitialized: [t, c.kvDim]), dV = Tensor(uninitialized: [t, c.kvDim])
        Attention.backward(q: a.q.pointer, k: a.k.pointer, v: a.v.pointer, dOut: dAttention.pointer,
                           dQ: dQ.pointer, dK: dK.pointer, dV: dV.pointer, count: t, heads: c.headCount,
                           kvHeads: c.kvHeadCount, headDim: c.headDim, keyStart: keyStart,
                           probabilities: a.probabilities.pointer, products: model.dtype)
        BackwardKernels.applyRotaryBackward(dQ.pointer, rows: t, heads: c.headCount, headDim: c.headDim, rowStride: c.qDim,
                                            cos: cos.pointer, sin: sin.pointer)
        BackwardKernels.applyRotaryBackward(dK.pointer, rows: t, heads: c.kvHeadCount, headDim: c.headDim, rowStride: c.kvDim,
                                            cos: cos.pointer, sin: sin.pointer)
        // Below the first layer only the embeddings remain: with them frozen, stop here.
        let needsInput = trainsBase || index > 0
        let dNormed1 = Tensor(uninitialized: [t, h])
        linearBackward(dQ, x: a.normed1, saved: a, rows: t, layer: index, slot: .q, dx: needsInput ? dNormed1 : nil, accumulate: false)
        linearBackward(dK, x: a.normed1, saved: a, rows: t, layer: index, slot: .k, dx: needsInput ? dNormed1 : nil, accumulate: true)
        linearBackward(dV, x: a.normed1, saved: a, rows: t, layer: index, slot: .v, dx: needsInput ? dNormed1 : nil, accumulate: true)
        if !needsInput { return dXMid }
        let dXIn = Tensor(uninitialized: [t, h])
        BackwardKernels.rmsNorm(x: a.xIn.pointer, weight: layer.inputNorm.pointer, inverseRMS: a.inverseRMS1.pointer,
                                dy: dNormed1.pointer, rows: t, dim: h, dx: dXIn.pointer,
                                dWeight: trainsBase ? grad(prefix + "input_layernorm.weight")?.pointer : nil)
        Kernels.add(dXIn.pointer, dXMid.pointer, count: dXIn.count)
        return dXIn
    }

    // MARK: Whole sequence

    /// Adds `scale · ∂(Σ CE over the trained tokens of sequence)/∂θ` to the gradients and returns
    /// the summed cross-entropy and the number of trained tokens.
    @discardableResult
    public func accumulate(_ sequence: TrainingSequence, scale: Float) throws -> (lossSum: Double, tokens: Int) {
        try run(sequence, scale: scale, backward: true)
    }

    /// The summed cross-entropy over the trained tokens of `sequence` and their count, with the
    /// adapter applied, without touching gradients (evaluation).
    public func loss(_ sequence: TrainingSequence) throws -> (lossSum: Double, tokens: Int) {
        let savedSeed = dropoutSeed
        defer { dropoutSeed = savedSeed }
        return try run(sequence, scale: 0, backward: false)
    }

    /// Largest position a sequence may give a token (RoPE's tables are built per row, so this
    /// bounds nothing but nonsense).
    public static let maxPosition = 1 << 24

    /// Refuses packed-row geometry the kernels cannot follow: positions and first keys must have
    /// one entry per token, positions lie in 0..<maxPosition, and each query's first key lies
    /// at or before the query and never before the previous query's.
    static func checkGeometry(_ sequence: TrainingSequence) throws {
        let t = sequence.ids.count
        if let positions = sequence.positions {
            guard positions.count == t else { throw ModelError("sequence has \(t) ids but \(positions.count) positions") }
            if let bad = positions.first(where: { $0 < 0 || $0 >= maxPosition }) { throw ModelError("position \(bad) is outside 0..<\(maxPosition)") }
        }
        if let keyStart = sequence.keyStart {
            guard keyStart.count == t else { throw ModelError("sequence has \(t) ids but \(keyStart.count) first keys") }
            var previous = 0
            for (query, first) in keyStart.enumerated() {
                guard first >= previous, first <= query else {
                    throw ModelError("query \(query)'s first key \(first) is not within \(previous)...\(query)")
                }
                previous = first
            }
        }
    }

    private func run(_ sequence: TrainingSequence, scale: Float, backward: Bool) throws -> (lossSum: Double, tokens: Int) {
        let droppingOut = backward && (adapter?.config.dropout ?? 0) > 0
        let previousAdapterDropout = droppingOut
        let c = model.config
        let t = sequence.ids.count, h = c.hiddenSize
        guard t == sequence.trained.count else { throw ModelError("sequence has \(t) ids but \(sequence.trained.count) mask entries") }
        for token in sequence.ids where token < 0 || token >= c.vocabSize {
            throw ModelError("token id \(token) is outside the vocabulary (0..<\(c.vocabSize))")
        }
        try Self.checkGeometry(sequence)
        let targets = (1..<max(t, 1)).filter { sequence.trained[$0] }
        if targets.isEmpty { return (0, 0) }
        let (cos, sin) = model.rotaryTables(positions: sequence.positions ?? Array(0..<t))
        var x = Tensor(uninitialized: [t, h])
        refreshComputeCopies()
        for (row, token) in sequence.ids.enumerated() { model.embedTokens.copyRow(token, into: x.pointer + row * h) }
        var saved: [LayerActivations] = []
        var inputs: [Tensor] = []
        dropoutActive = previousAdapterDropout
        defer { dropoutActive = false }
        // Training keeps each layer's activations (or, with checkpointing, only its input);
        // a loss alone keeps nothing and updates the residual stream in place.
        let mode: LayerForwardMode = !backward ? .inference : (checkpointing ? LayerForwardMode(keepActivations: false, consumesInput: false) : .training)
        for index in 0..<model.layers.count {
            let (next, activations) = forwardLayer(index, x: x, cos: cos, sin: sin, keyStart: sequence.keyStart, mode: mode)
            if backward && checkpointing { inputs.append(x) } else if let activations { saved.append(activations) }
            x = next
        }
        // Final norm, logits of the rows that predict trained tokens, cross-entropy and its gradient.
        let normed = Tensor(uninitialized: [t, h]), inverse = Tensor(uninitialized: [t])
        Kernels.rmsNorm(x.pointer, weight: model.finalNorm.pointer, rows: t, dim: h, eps: c.rmsNormEps, into: normed.pointer)
        BackwardKernels.inverseRMS(x.pointer, rows: t, dim: h, eps: c.rmsNormEps, into: inverse.pointer)
        let rows = targets.map { $0 - 1 }
        let logits = model.logits(hidden: normed, rows: rows)
        let vocab = c.vocabSize
        var lossSum = 0.0
        if !backward {
            for (i, target) in targets.enumerated() {
                lossSum += Kernels.crossEntropy(logits.pointer + i * vocab, vocab: vocab, target: sequence.ids[target])
            }
            return (lossSum, targets.count)
        }
        lossSum = BackwardKernels.crossEntropyRows(logits.pointer, rows: targets.count, vocab: vocab,
                                                   targets: targets.map { sequence.ids[$0] }, scale: scale)
        let selected = Tensor(uninitialized: [rows.count, h])
        for (i, row) in rows.enumerated() { (selected.pointer + i * h).update(from: normed.pointer + row * h, count: h) }
        let dSelected = Tensor(uninitialized: [rows.count, h])
        BLAS.linearInputGradient(logits.pointer, rows: rows.count, weight: model.lmHead, into: dSelected.pointer)
        if trainsBase, let dHead = grad(c.tieWordEmbeddings ? "model.embed_tokens.weight" : "lm_head.weight") {
            BLAS.addLinearWeightGradient(logits.pointer, x: selected.pointer, rows: rows.count, outFeatures: vocab, inFeatures: h,
                                         dtype: model.dtype, into: dHead.pointer)
        }
        let dNormed = Tensor(zeros: [t, h])
        for (i, row) in rows.enumerated() { (dNormed.pointer + row * h).update(from: dSelected.pointer + i * h, count: h) }
        var dX = Tensor(uninitialized: [t, h])
        BackwardKernels.rmsNorm(x: x.pointer, weight: model.finalNorm.pointer, inverseRMS: inverse.pointer, dy: dNormed.pointer,
                                rows: t, dim: h, dx: dX.pointer, dWeight: trainsBase ? grad("model.norm.weight")?.pointer : nil)
        for index in stride(from: model.layers.count - 1, through: 0, by: -1) {
            let activations: LayerActivations
            if checkpointing {
                guard let recomputed = forwardLayer(index, x: inputs[index], cos: cos, sin: sin, keyStart: sequence.keyStart, mode: .training).1 else {
                    throw ModelError("layer \(index) kept no activations")
                }
                activations = recomputed
            } else {
                activations = saved[index]
                saved.removeLast()
            }
            dX = backwardLayer(index, activations, dOut: dX, cos: cos, sin: sin, keyStart: sequence.keyStart)
        }
        if trainsBase, let dEmbed = grad("model.embed_tokens.weight") {
            for (row, token) in sequence.ids.enumerated() {
                Kernels.add(dEmbed.pointer + token * h, dX.pointer + row * h, count: h)
            }
        }
        return (lossSum, targets.count)
    }
}

extension LlamaModel {
    /// Every weight tensor by its Hugging Face name (the lm head only when untied).
    /// The float32 values of a matrix are the kept ones (shared: full fine-tuning trains them in
    /// place), or widened copies when the model holds bfloat16 only.
    public func namedWeights() -> [(String, Tensor)] {
        var result: [(String, Tensor)] = [("model.embed_tokens.weight", embedTokens.floatValues()), ("model.norm.weight", finalNorm)]
        if !config.tieWordEmbeddings { result.append(("lm_head.weight", lmHead.floatValues())) }
        for (index, layer) in layers.enumerated() {
            let p = "model.layers.\(index)."
            result.append((p + "input_layernorm.weight", layer.inputNorm))
            result.append((p + "post_attention_layernorm.weight", layer.postAttentionNorm))
            let projections: [(LinearSlot, WeightMatrix, Tensor?)] = [
                (.q, layer.qProj, layer.qBias), (.k, layer.kProj, layer.kBias), (.v, layer.vProj, layer.vBias),
                (.o, layer.oProj, layer.oBias), (.gate, layer.gateProj, layer.gateBias), (.up, layer.upProj, layer.upBias),
                (.down, layer.downProj, layer.downBias),
            ]
            for (slot, weight, bias) in projections {
                result.append((p + slot.rawValue + ".weight", weight.floatValues()))
                if let bias { result.append((p + slot.rawValue + ".bias", bias)) }
            }
        }
        return result
    }
}
