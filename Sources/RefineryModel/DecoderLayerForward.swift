import Foundation
import RefineryTensor

/// What one layer's forward pass leaves for its backward pass.
struct LayerActivations {
    var xIn: Tensor
    var normed1: Tensor, inverseRMS1: Tensor
    var q: Tensor, k: Tensor, v: Tensor
    var attention: Tensor
    /// The attention probabilities, kept so that the backward pass need not recompute them.
    var probabilities: Tensor
    var xMid: Tensor
    var normed2: Tensor, inverseRMS2: Tensor
    var gate: Tensor, up: Tensor, act: Tensor
    /// `x·Aᵀ` of each adapted projection.
    var loraU: [LinearSlot: Tensor]
    /// With LoRA dropout: the dropped input `x ⊙ mask` of each adapted projection, and the mask
    /// (0 or 1/(1 − p) per element).
    var loraX: [LinearSlot: (dropped: Tensor, mask: Tensor)] = [:]
}

/// What an adapted projection computed besides its output: `dropout(x)·Aᵀ`, and the dropped
/// input with its mask when dropout is on.
typealias LowRankTrace = (u: Tensor, dropped: (dropped: Tensor, mask: Tensor)?)

/// Computes `out (+)= x·Wᵀ + b (+ the adapter's term)` for projection `slot` of layer `layer`
/// over `rows` rows; returns the adapter's trace when the projection is adapted.
typealias Projection = (_ x: Tensor, _ rows: Int, _ layer: Int, _ slot: LinearSlot, _ out: Tensor, _ accumulate: Bool) -> LowRankTrace?

/// How a layer's forward pass is run.
struct LayerForwardMode {
    /// Keep every activation the backward pass needs (training).
    var keepActivations: Bool
    /// The layer may add its residual updates into its input tensor (nothing else reads it).
    var consumesInput: Bool
    /// Decoding: the pass's rows continue these sequences, each attending to its own cache (this
    /// pass's keys and values are appended to it). Empty: the rows are one sequence (or packed
    /// ones, see `keyStart`) with no past.
    var segments: [CachedSegment] = []

    static let inference = LayerForwardMode(keepActivations: false, consumesInput: true)
    static let training = LayerForwardMode(keepActivations: true, consumesInput: false)
}

/// Rows `rows` of a decoding pass: the next tokens of the sequence whose past is in `cache`.
struct CachedSegment {
    let rows: Range<Int>
    let cache: KVCache
    var adapter: LoRAAdapter? = nil
}

extension LlamaModel {
    /// Each decoding sequence's own adapter over its rows: `out[rows] += s·(x[rows]·Aᵀ)·Bᵀ`.
    func addSequenceAdapters(_ segments: [CachedSegment], x: Tensor, layer: Int, slot: LinearSlot, into out: Tensor) {
        for segment in segments {
            guard let adapter = segment.adapter, let pair = adapter.pair(layer: layer, slot: slot), !segment.rows.isEmpty else { continue }
            let n = segment.rows.count, rank = pair.a.shape[0], inFeatures = pair.a.shape[1], outFeatures = pair.b.shape[0]
            let u = Tensor(uninitialized: [n, rank])
            BLAS.gemm(transA: false, transB: true, m: n, n: rank, k: inFeatures, a: x.pointer + segment.rows.lowerBound * inFeatures, lda: inFeatures,
                      b: pair.a.pointer, ldb: inFeatures, beta: 0, c: u.pointer, ldc: rank)
            BLAS.gemm(transA: false, transB: true, m: n, n: outFeatures, k: rank, alpha: adapter.config.scaling, a: u.pointer, lda: rank,
                      b: pair.b.pointer, ldb: rank, beta: 1, c: out.pointer + segment.rows.lowerBound * outFeatures, ldc: outFeatures)
        }
    }

    /// The base projection: `out (+)= x·Wᵀ + b` with this model's weights.
    func baseProjection(_ x: Tensor, rows: Int, layer: Int, slot: LinearSlot, into out: Tensor, accumulate: Bool) {
        let (w, b) = layers[layer].weights(slot)
        BLAS.linear(x.pointer, rows: rows, weight: w, into: out.pointer, accumulate: accumulate)
        if let b { Kernels.addBias(out.pointer, bias: b.pointer, rows: rows, cols: w.shape[0]) }
    }

    /// The forward pass of decoder layer `index` — the only one: generation, evaluation and
    /// training all run it (the parity tests against transformers and PEFT guard it). `x` holds
    /// `[t, hidden]` rows whose rotary tables are `cos`/`sin`; `keyStart` is the first key each
    /// query may attend to (packed rows). Returns the layer's output, and its activations when
    /// `mode.keepActivations`.
    func forwardLayer(_ index: Int, x xIn: Tensor, cos: Tensor, sin: Tensor, keyStart: [Int]?, mode: LayerForwardMode,
                      project: Projection) -> (Tensor, LayerActivations?) {
        let c = config
        let t = xIn.shape[0], h = c.hiddenSize
        let layer = layers[index]
        let keep = mode.keepActivations
        var loraU: [LinearSlot: Tensor] = [:]
        var loraX: [LinearSlot: (dropped: Tensor, mask: Tensor)] = [:]
        func run(_ x: Tensor, _ slot: LinearSlot, into out: Tensor, accumulate: Bool) {
            guard let trace = project(x, t, index, slot, out, accumulate), keep else { return }
            loraU[slot] = trace.u
            if let dropped = trace.dropped { loraX[slot] = dropped }
        }
        let normed1 = Tensor(uninitialized: [t, h])
        Kernels.rmsNorm(xIn.pointer, weight: layer.inputNorm.pointer, rows: t, dim: h, eps: c.rmsNormEps, into: normed1.pointer)
        let q = Tensor(uninitialized: [t, c.qDim]), k = Tensor(uninitialized: [t, c.kvDim]), v = Tensor(uninitialized: [t, c.kvDim])
        run(normed1, .q, into: q, accumulate: false)
        run(normed1, .k, into: k, accumulate: false)
        run(normed1, .v, into: v, accumulate: false)
        let rows = Array(0..<t)
        Kernels.applyRotary(q.pointer, rows: t, heads: c.headCount, headDim: c.headDim, rowStride: c.qDim, positions: rows, cos: cos.pointer, sin: sin.pointer)
        Kernels.applyRotary(k.pointer, rows: t, heads: c.kvHeadCount, headDim: c.headDim, rowStride: c.kvDim, positions: rows, cos: cos.pointer, sin: sin.pointer)
        let attention = Tensor(uninitialized: [t, c.qDim])
        var probabilities: Tensor?
        if mode.segments.isEmpty {
            probabilities = keep
                ? Tensor(uninitialized: [Attention.probabilityCount(queryCount: t, keyCount: t, heads: c.headCount, kvHeads: c.kvHeadCount, keyStart: keyStart)])
                : nil
            Attention.causal(q: q.pointer, qStride: c.qDim, k: k.pointer, v: v.pointer, kvStride: c.kvDim,
                             out: attention.pointer, outStride: c.qDim, queryCount: t, keyCount: t,
                             heads: c.headCount, kvHeads: c.kvHeadCount, headDim: c.headDim, keyStart: keyStart,
                             probabilities: probabilities?.pointer, products: dtype)
        } else {
            precondition(!keep && keyStart == nil, "decoding keeps no activations and packs no rows")
            for segment in mode.segments {
                let first = segment.rows.lowerBound, count = segment.rows.count, past = segment.cache.length
                segment.cache.store(layer: index, keys: k.pointer + first * c.kvDim, values: v.pointer + first * c.kvDim, rows: count)
                segment.cache.withFloatRows(layer: index, positions: past + count) { keys, values in
                    Attention.causal(q: q.pointer + first * c.qDim, qStride: c.qDim, k: keys, v: values, kvStride: c.kvDim,
                                     out: attention.pointer + first * c.qDim, outStride: c.qDim, queryCount: count,
                                     keyCount: past + count, heads: c.headCount, kvHeads: c.kvHeadCount, headDim: c.headDim,
                                     products: dtype)
                }
            }
        }
        // x += attention · Woᵀ (+ bias); in place when nothing else reads the input.
        let inPlace = mode.consumesInput && !keep
        let xMid = inPlace ? xIn : xIn.copy()
        run(attention, .o, into: xMid, accumulate: true)
        let normed2 = Tensor(uninitialized: [t, h])
        Kernels.rmsNorm(xMid.pointer, weight: layer.postAttentionNorm.pointer, rows: t, dim: h, eps: c.rmsNormEps, into: normed2.pointer)
        let gate = Tensor(uninitialized: [t, c.intermediateSize]), up = Tensor(uninitialized: [t, c.intermediateSize])
        run(normed2, .gate, into: gate, accumulate: false)
        run(normed2, .up, into: up, accumulate: false)
        let act = keep ? gate.copy() : gate
        Kernels.siluGate(act.pointer, up: up.pointer, count: act.count)
        let xOut = inPlace ? xMid : xMid.copy()
        run(act, .down, into: xOut, accumulate: true)
        guard keep, let probabilities else { return (xOut, nil) }
        let inv1 = Tensor(uninitialized: [t]), inv2 = Tensor(uninitialized: [t])
        BackwardKernels.inverseRMS(xIn.pointer, rows: t, dim: h, eps: c.rmsNormEps, into: inv1.pointer)
        BackwardKernels.inverseRMS(xMid.pointer, rows: t, dim: h, eps: c.rmsNormEps, into: inv2.pointer)
        let saved = LayerActivations(xIn: xIn, normed1: normed1, inverseRMS1: inv1, q: q, k: k, v: v, attention: attention, probabilities: probabilities,
                                     xMid: xMid, normed2: normed2, inverseRMS2: inv2, gate: gate, up: up, act: act, loraU: loraU, loraX: loraX)
        return (xOut, saved)
    }
}

extension DecoderLayerWeights {
    /// The weight and bias of projection `slot`.
    func weights(_ slot: LinearSlot) -> (WeightMatrix, Tensor?) {
        switch slot {
        case .q: return (qProj, qBias)
        case .k: return (kProj, kBias)
        case .v: return (vProj, vBias)
        case .o: return (oProj, oBias)
        case .gate: return (gateProj, gateBias)
        case .up: return (upProj, upBias)
        case .down: return (downProj, downBias)
        }
    }
}
