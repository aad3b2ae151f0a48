import Foundation
import RefineryTensor

/// The weights of one decoder layer.
public struct DecoderLayerWeights: Sendable {
    public var inputNorm: Tensor
    public var qProj: WeightMatrix, kProj: WeightMatrix, vProj: WeightMatrix, oProj: WeightMatrix
    public var qBias: Tensor?, kBias: Tensor?, vBias: Tensor?, oBias: Tensor?
    public var postAttentionNorm: Tensor
    public var gateProj: WeightMatrix, upProj: WeightMatrix, downProj: WeightMatrix
    public var gateBias: Tensor?, upBias: Tensor?, downBias: Tensor?
}

/// A Llama-family decoder (Llama, Mistral, Qwen2, SmolLM, TinyLlama), computing what transformers
/// computes: products in float32 or bfloat16 (`dtype`), everything else in float32.
public final class LlamaModel: @unchecked Sendable {
    /// The architecture.
    public let config: ModelConfig
    /// The precision of the matrix products (and of the frozen weights in memory).
    public let dtype: ComputeDType
    /// `model.embed_tokens.weight` `[vocab, hidden]`.
    public let embedTokens: WeightMatrix
    /// The decoder layers.
    public let layers: [DecoderLayerWeights]
    /// `model.norm.weight`.
    public let finalNorm: Tensor
    /// `lm_head.weight` (the embedding matrix when tied, or when the model has no language-model
    /// head — then `hasLanguageModelHead` is false and `logits` must not be called).
    public let lmHead: WeightMatrix
    /// False for a checkpoint loaded without its language-model head (a sequence classifier's body).
    public let hasLanguageModelHead: Bool
    private let inverseFrequencies: [Float]
    /// What the NF4 cache did during this load (read, wrote, or why it could not write), or nil without one.
    public let nf4CacheReport: String?

    /// Loads `config.json` and the safetensors weights of `directory`, products in `dtype` (`.auto`
    /// follows the checkpoint as transformers does). `keepFloatWeights` keeps float32 master copies
    /// of every matrix (full fine-tuning in bfloat16); otherwise a bfloat16 model holds its
    /// matrices in bfloat16 only.
    /// `projections` chooses how the seven projections of every layer are held (see `ProjectionStorage`).
    /// `nf4Cache`: where quantized projections are kept between loads (see `NF4Cache`).
    public convenience init(directory: URL, dtype: DTypeChoice = .float32, keepFloatWeights: Bool = false,
                            projections: ProjectionStorage = .asStored, nf4Cache: NF4Cache? = nil) throws {
        let config = try ModelConfig.load(directory: directory)
        let checkpoint = try Checkpoint(directory: directory)
        try self.init(config: config, checkpoint: checkpoint, dtype: dtype.resolve(config: config, checkpoint: checkpoint),
                      keepFloatWeights: keepFloatWeights, projections: projections, nf4Cache: nf4Cache)
    }

    /// Builds the model from an opened checkpoint, checking every tensor's shape against `config`.
    /// `languageModelHead: false` loads the decoder without `lm_head` (a `*ForSequenceClassification`
    /// checkpoint has a score head instead).
    /// `projections`: how the seven projections of every layer are held (embeddings, norms and
    /// the lm head stay in `dtype`, as bitsandbytes' `Linear4bit` replaces only the linear layers).
    /// `nf4Cache`: with NF4 projections, read them from this cache when it holds this checkpoint,
    /// else quantize and write them there (`nf4CacheReport` says which, or why the write failed).
    public init(config: ModelConfig, checkpoint: Checkpoint, dtype: ComputeDType = .float32, keepFloatWeights: Bool = false,
                projections: ProjectionStorage = .asStored, languageModelHead: Bool = true, nf4Cache: NF4Cache? = nil) throws {
        self.config = config
        self.dtype = dtype
        let h = config.hiddenSize, i = config.intermediateSize
        func matrix(_ name: String, _ shape: [Int]) throws -> WeightMatrix {
            try checkpoint.matrix(name, shape: shape, dtype: dtype, keepFloat: keepFloatWeights)
        }
        let cached = projections == .asStored ? nil : try nf4Cache?.load(for: checkpoint)
        var quantizedNow: [(String, NF4Matrix)] = [], everyQuantized: [(String, NF4Matrix)] = []
        func quantized(_ name: String, _ shape: [Int]) throws -> NF4Matrix {
            let result: NF4Matrix
            if let hit = cached?[name], hit.shape == shape {
                result = hit
            } else {
                let values = try checkpoint.tensor(name, shape: shape)
                result = NF4Matrix(quantizing: values.pointer, shape: shape)
                quantizedNow.append((name, result))
            }
            everyQuantized.append((name, result))
            return result
        }
        func projection(_ name: String, _ shape: [Int]) throws -> WeightMatrix {
            switch projections {
            case .asStored:
                return try matrix(name, shape)
            case .nf4:
                return WeightMatrix(nf4: try quantized(name, shape), products: dtype)
            case .nf4RoundTrip:
                return WeightMatrix(try quantized(name, shape).floatValues(), dtype: dtype, keepFloat: keepFloatWeights)
            }
        }
        embedTokens = try matrix("model.embed_tokens.weight", [config.vocabSize, h])
        var layers: [DecoderLayerWeights] = []
        for l in 0..<config.layerCount {
            let p = "model.layers.\(l)."
            func bias(_ name: String, _ size: Int, _ present: Bool) throws -> Tensor? {
                present ? try checkpoint.tensor(p + name, shape: [size]) : nil
            }
            layers.append(DecoderLayerWeights(
                inputNorm: try checkpoint.tensor(p + "input_layernorm.weight", shape: [h]),
                qProj: try projection(p + "self_attn.q_proj.weight", [config.qDim, h]),
                kProj: try projection(p + "self_attn.k_proj.weight", [config.kvDim, h]),
                vProj: try projection(p + "self_attn.v_proj.weight", [config.kvDim, h]),
                oProj: try projection(p + "self_attn.o_proj.weight", [h, config.qDim]),
                qBias: try bias("self_attn.q_proj.bias", config.qDim, config.qkvBias),
                kBias: try bias("self_attn.k_proj.bias", config.kvDim, config.qkvBias),
                vBias: try bias("self_attn.v_proj.bias", config.kvDim, config.qkvBias),
                oBias: try bias("self_attn.o_proj.bias", h, config.outputBias),
                postAttentionNorm: try checkpoint.tensor(p + "post_attention_layernorm.weight", shape: [h]),
                gateProj: try projection(p + "mlp.gate_proj.weight", [i, h]),
                upProj: try projection(p + "mlp.up_proj.weight", [i, h]),
                downProj: try projection(p + "mlp.down_proj.weight", [h, i]),
                gateBias: try bias("mlp.gate_proj.bias", i, config.mlpBias),
                upBias: try bias("mlp.up_proj.bias", i, config.mlpBias),
                downBias: try bias("mlp.down_proj.bias", h, config.mlpBias)))
        }
        self.layers = layers
        finalNorm = try checkpoint.tensor("model.norm.weight", shape: [h])
        hasLanguageModelHead = languageModelHead
        if config.tieWordEmbeddings || !languageModelHead {
            lmHead = embedTokens
        } else {
            lmHead = try matrix("lm_head.weight", [config.vocabSize, h])
        }
        inverseFrequencies = config.inverseFrequencies
        if let nf4Cache, projections != .asStored {
            let path = nf4Cache.file(for: checkpoint).path
            if quantizedNow.isEmpty {
                nf4CacheReport = "read the 4-bit projections from \(path)"
            } else {
                do {
                    try nf4Cache.store(everyQuantized, for: checkpoint)
                    nf4CacheReport = "wrote the 4-bit projections to \(path) (later loads read them from there)"
                } catch {
                    nf4CacheReport = "could not write the NF4 cache (\(error)); the run goes on without it"
                }
            }
        } else {
            nf4CacheReport = nil
        }
    }

    /// Every weight matrix, each once (the lm head is the embedding matrix when tied).
    public var matrices: [WeightMatrix] {
        var result = [embedTokens]
        if !config.tieWordEmbeddings && hasLanguageModelHead { result.append(lmHead) }
        for layer in layers {
            result += [layer.qProj, layer.kProj, layer.vProj, layer.oProj, layer.gateProj, layer.upProj, layer.downProj]
        }
        return result
    }

    /// True when the layers' projections are held in 4-bit NF4 (a QLoRA base).
    public var hasQuantizedProjections: Bool { layers.first?.qProj.nf4 != nil }

    /// True when every matrix keeps float32 values (a float32 model, or one loaded with `keepFloatWeights`).
    public var keepsFloatWeights: Bool { matrices.allSatisfy { $0.float != nil } }

    /// Rounds every float32 master matrix into its bfloat16 copy (after the master changed).
    public func refreshBFloat16Copies() {
        for matrix in matrices { matrix.refreshBFloat16() }
    }

    /// Creates a KV cache for up to `capacity` positions, in this model's dtype (bfloat16 keys and
    /// values for a bfloat16 model, as transformers keeps them).
    public func makeCache(capacity: Int) -> KVCache {
        KVCache(layers: config.layerCount, capacity: capacity, width: config.kvDim, dtype: dtype)
    }

    /// Runs the decoder over `tokens` and returns the final-norm hidden states `[T, hidden]`.
    ///
    /// - `positions`: rotary positions (default: `cache.length + t`); packed rows restart them per sample.
    /// - `cache`: when given, keys/values are appended and attention covers the cached prefix.
    /// - `keyStart`: for packed rows, the first key each query may attend to (block-diagonal mask).
    public func hiddenStates(tokens: [Int], positions: [Int]? = nil, cache: KVCache? = nil, keyStart: [Int]? = nil) throws -> Tensor {
        if let cache {
            guard positions == nil, keyStart == nil else {
                throw ModelError("a pass over a KV cache continues one sequence: it takes neither positions nor packed rows")
            }
            return try hiddenStates(batch: [SequenceStep(tokens: tokens, cache: cache)])
        }
        try checkTokens(tokens)
        return run(tokens: tokens, positions: positions ?? Array(tokens.indices), keyStart: keyStart, segments: [])
    }

    /// One decoding pass over several sequences at once: each step's tokens continue its own
    /// cache (a whole prompt when a sequence starts, then one token at a time). The projections
    /// run once over all rows, so the weights are read once for the whole batch; attention runs
    /// per sequence against its cache. Returns the final-norm hidden states of all rows, the
    /// steps' rows one after another.
    public func hiddenStates(batch: [SequenceStep]) throws -> Tensor {
        var tokens: [Int] = [], positions: [Int] = [], segments: [CachedSegment] = []
        var seen = Set<ObjectIdentifier>()
        for step in batch {
            guard !step.tokens.isEmpty else { throw ModelError("a decoding step has no tokens: give each sequence at least one") }
            guard seen.insert(ObjectIdentifier(step.cache)).inserted else {
                throw ModelError("one KV cache appears twice in a decoding batch: each sequence needs its own")
            }
            let past = step.cache.length
            guard past + step.tokens.count <= step.cache.capacity else {
                throw ModelError("sequence of \(past + step.tokens.count) tokens exceeds the KV cache capacity \(step.cache.capacity)")
            }
            guard step.cache.width == config.kvDim, step.cache.dtype == dtype else {
                throw ModelError("a KV cache made for another model was passed: make it with this model's makeCache(capacity:)")
            }
            try checkTokens(step.tokens)
            try step.adapter?.checkFits(config)
            segments.append(CachedSegment(rows: tokens.count..<(tokens.count + step.tokens.count), cache: step.cache, adapter: step.adapter))
            tokens += step.tokens
            positions += past..<(past + step.tokens.count)
        }
        let hidden = run(tokens: tokens, positions: positions, keyStart: nil, segments: segments)
        for segment in segments { segment.cache.length += segment.rows.count }
        return hidden
    }

    private func checkTokens(_ tokens: [Int]) throws {
        for token in tokens where token < 0 || token >= config.vocabSize {
            throw ModelError("token id \(token) is outside the vocabulary (0..<\(config.vocabSize))")
        }
    }

    /// The decoder over rows whose tokens, rotary positions and caches are given.
    private func run(tokens: [Int], positions: [Int], keyStart: [Int]?, segments: [CachedSegment]) -> Tensor {
        let t = tokens.count, h = config.hiddenSize
        var x = Tensor(uninitialized: [t, h])
        for (row, token) in tokens.enumerated() { embedTokens.copyRow(token, into: x.pointer + row * h) }
        let (cosTable, sinTable) = rotaryTables(positions: positions)
        var mode = LayerForwardMode.inference
        mode.segments = segments
        for index in layers.indices {
            x = forwardLayer(index, x: x, cos: cosTable, sin: sinTable, keyStart: keyStart, mode: mode) { x, rows, layer, slot, out, accumulate in
                self.baseProjection(x, rows: rows, layer: layer, slot: slot, into: out, accumulate: accumulate)
                self.addSequenceAdapters(segments, x: x, layer: layer, slot: slot, into: out)
                return nil
            }.0
        }
        let output = Tensor(zeros: [t, h])
        Kernels.rmsNorm(x.pointer, weight: finalNorm.pointer, rows: t, dim: h, eps: config.rmsNormEps, into: output.pointer)
        return output
    }

    /// Logits `[rows.count, vocab]` for the given rows of `hidden`.
    public func logits(hidden: Tensor, rows: [Int]? = nil) -> Tensor {
        precondition(hasLanguageModelHead, "logits of a model loaded without its language-model head")
        let h = config.hiddenSize
        let selected: Tensor
        if let rows {
            selected = Tensor(zeros: [rows.count, h])
            for (i, row) in rows.enumerated() { (selected.pointer + i * h).update(from: hidden.pointer + row * h, count: h) }
        } else {
            selected = hidden
        }
        let count = selected.count / h
        let result = Tensor(uninitialized: [count, config.vocabSize])
        BLAS.linear(selected.pointer, rows: count, weight: lmHead, into: result.pointer)
        return result
    }

    /// Logits `[T, vocab]` for every position of `tokens`.
    public func forward(tokens: [Int], positions: [Int]? = nil, cache: KVCache? = nil, keyStart: [Int]? = nil) throws -> Tensor {
        logits(hidden: try hiddenStates(tokens: tokens, positions: positions, cache: cache, keyStart: keyStart))
    }

    /// Rotary `cos`/`sin` tables `[positions.count, headDim / 2]` for exactly these positions.
    func rotaryTables(positions: [Int]) -> (Tensor, Tensor) {
        let half = config.headDim / 2
        let cosTable = Tensor(zeros: [positions.count, half]), sinTable = Tensor(zeros: [positions.count, half])
        for (row, position) in positions.enumerated() {
            for i in 0..<half {
                let angle = Float(position) * inverseFrequencies[i]
                cosTable.pointer[row * half + i] = Foundation.cos(angle)
                sinTable.pointer[row * half + i] = Foundation.sin(angle)
            }
        }
        return (cosTable, sinTable)
    }
}

/// How a model holds the seven projections of its layers.
public enum ProjectionStorage: Sendable, Equatable {
    /// As the checkpoint stores them, in the model's dtype.
    case asStored
    /// In 4-bit NF4 with double quantization (QLoRA's frozen base), quantized as they are read.
    case nf4
    /// Quantized to NF4 and dequantized again, as ordinary weights: the base a QLoRA adapter was
    /// trained against, to merge it into.
    case nf4RoundTrip
}
