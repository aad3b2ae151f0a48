import Foundation
import RefineryTensor

/// A BERT-family encoder (`BertModel`): word + absolute position + token-type embeddings with
/// LayerNorm, then post-norm layers of bidirectional attention and a GELU MLP.
///
/// Sequences run packed: the rows of every sequence of a batch lie end to end and each attends
/// only to its own rows, so there is no padding and no mask — the same values as transformers'
/// padded batch with an attention mask, without the padded work. Products run in the weights'
/// precision (bfloat16 operands with float32 sums, or float32), or, with `int8Products`, the four
/// weight products of each layer are dynamically quantized (`Int8Matrix`, as PyTorch's
/// `quantize_dynamic`) and everything else runs in float32; LayerNorm, softmax and GELU in float32.
public final class BertEncoder: @unchecked Sendable {
    /// The architecture.
    public let config: BertConfig
    /// The precision of the products (float32 when `int8Products`: attention's own products).
    public let dtype: ComputeDType
    /// Whether the layers' weight products are dynamically quantized int8.
    public let int8Products: Bool
    let wordEmbeddings: Tensor
    let positionEmbeddings: Tensor
    let tokenTypeEmbeddings: Tensor
    let embeddingNorm: (weight: Tensor, bias: Tensor)
    let layers: [Layer]
    /// Scratch buffers kept between calls.
    private let workspaces = EncoderWorkspaces()

    /// A layer's weight as its products read it.
    enum Weight {
        case matrix(WeightMatrix)
        case int8(Int8Matrix)

        /// The bfloat16 values, when the products run in bfloat16.
        var bfloat16: BFloat16Storage? {
            if case let .matrix(matrix) = self { return matrix.bfloat16 }
            return nil
        }
    }

    struct Layer {
        /// Queries, keys and values stacked: `[3 × hidden, hidden]`, one product for all three.
        let qkv: Weight
        let qkvBias: Tensor
        let attentionOutput: Weight
        let attentionOutputBias: Tensor
        let attentionNorm: (weight: Tensor, bias: Tensor)
        let intermediate: Weight
        let intermediateBias: Tensor
        let output: Weight
        let outputBias: Tensor
        let outputNorm: (weight: Tensor, bias: Tensor)
    }

    /// Loads the weights of `checkpoint` (names with or without the `bert.` prefix of task models);
    /// with `int8Products` the layers' weights are quantized (and `dtype` must be float32).
    public init(config: BertConfig, checkpoint: Checkpoint, dtype: ComputeDType, int8Products: Bool = false) throws {
        guard !int8Products || dtype == .float32 else {
            throw ModelError("int8 products run with float32 everything else; bfloat16 does not combine with them")
        }
        self.config = config
        self.dtype = dtype
        self.int8Products = int8Products
        let prefix = checkpoint.contains("embeddings.word_embeddings.weight") || !checkpoint.contains("bert.embeddings.word_embeddings.weight")
            ? "" : "bert."
        let h = config.hiddenSize, inner = config.intermediateSize
        func vector(_ name: String, _ count: Int) throws -> Tensor { try checkpoint.tensor(prefix + name, shape: [count]) }
        func norm(_ name: String) throws -> (weight: Tensor, bias: Tensor) {
            (try vector(name + ".weight", h), try vector(name + ".bias", h))
        }
        func quantized(_ values: Tensor, _ name: String) throws -> Int8Matrix {
            do { return try Int8Matrix(quantizing: values) } catch { throw ModelError("\(prefix + name): \(error)") }
        }
        func matrix(_ name: String, _ shape: [Int]) throws -> Weight {
            int8Products ? .int8(try quantized(try checkpoint.tensor(prefix + name, shape: shape), name))
                : .matrix(try checkpoint.matrix(prefix + name, shape: shape, dtype: dtype, keepFloat: false))
        }
        wordEmbeddings = try checkpoint.tensor(prefix + "embeddings.word_embeddings.weight", shape: [config.vocabSize, h])
        positionEmbeddings = try checkpoint.tensor(prefix + "embeddings.position_embeddings.weight", shape: [config.maxPositionEmbeddings, h])
        tokenTypeEmbeddings = try checkpoint.tensor(prefix + "embeddings.token_type_embeddings.weight", shape: [config.typeVocabSize, h])
        embeddingNorm = try norm("embeddings.LayerNorm")
        layers = try (0..<config.layerCount).map { index in
            let p = "encoder.layer.\(index)."
            let parts = try ["query", "key", "value"].map { try checkpoint.tensor(prefix + p + "attention.self.\($0).weight", shape: [h, h]) }
            let stacked = Tensor(uninitialized: [3 * h, h])
            for (i, part) in parts.enumerated() { (stacked.pointer + i * h * h).update(from: part.pointer, count: h * h) }
            let biases = try ["query", "key", "value"].map { try vector(p + "attention.self.\($0).bias", h) }
            let stackedBias = Tensor(uninitialized: [3 * h])
            for (i, part) in biases.enumerated() { (stackedBias.pointer + i * h).update(from: part.pointer, count: h) }
            return Layer(
                qkv: int8Products ? .int8(try quantized(stacked, p + "attention.self.{query,key,value}.weight"))
                    : .matrix(WeightMatrix(stacked, dtype: dtype, keepFloat: false)), qkvBias: stackedBias,
                attentionOutput: try matrix(p + "attention.output.dense.weight", [h, h]),
                attentionOutputBias: try vector(p + "attention.output.dense.bias", h),
                attentionNorm: try norm(p + "attention.output.LayerNorm"),
                intermediate: try matrix(p + "intermediate.dense.weight", [inner, h]),
                intermediateBias: try vector(p + "intermediate.dense.bias", inner),
                output: try matrix(p + "output.dense.weight", [h, inner]),
                outputBias: try vector(p + "output.dense.bias", h),
                outputNorm: try norm(p + "output.LayerNorm"))
        }
    }

    /// The last hidden states of `sequences` (token ids, token type 0), packed:
    /// `[Σ lengths, hidden]`, sequence `s` at rows `starts[s]..<starts[s+1]`.
    public func hiddenStates(_ sequences: [[Int]]) throws -> (states: Tensor, starts: [Int]) {
        let starts = try packedStarts(sequences)
        let rows = starts[starts.count - 1]
        let x = Tensor(uninitialized: [rows, config.hiddenSize])
        guard rows > 0 else { return (x, starts) }
        let space = workspaces.take(rows: rows, config: config, bfloat16: dtype == .bfloat16)
        defer { workspaces.giveBack(space) }
        embed(sequences, starts: starts, into: x.pointer, space: space)
        for layer in layers { run(layer, rows: rows, starts: starts, x: x.pointer, space: space) }
        return (x, starts)
    }

    /// The last hidden state of each sequence's first token (`[CLS]`): `[sequences, hidden]`, a
    /// zero row for an empty sequence — what a classifier's pooler reads. Equal to those rows of
    /// `hiddenStates`, but the last layer computes keys and values for every row and everything
    /// else (queries, attention, projection, MLP) for the first rows only: one layer's work less.
    public func firstTokenStates(_ sequences: [[Int]]) throws -> Tensor {
        let h = config.hiddenSize
        let starts = try packedStarts(sequences)
        let rows = starts[starts.count - 1], count = sequences.count
        let result = Tensor(zeros: [count, h])
        guard rows > 0, let last = layers.last else { return result }
        let space = workspaces.take(rows: rows, config: config, bfloat16: dtype == .bfloat16)
        defer { workspaces.giveBack(space) }
        let x = space.states.pointer
        embed(sequences, starts: starts, into: x, space: space)
        for layer in layers.dropLast() { run(layer, rows: rows, starts: starts, x: x, space: space) }
        // Keys and values of every row: rows h..<3h of the stacked weight into columns h..<3h.
        product(x, space.halves?.x.pointer, rows: rows, last.qkv, outputRows: h..<(3 * h), into: space.qkv.pointer + h, ldc: 3 * h)
        // The first rows on their own: queries, attention, then the rest of the layer.
        let firsts = EncoderWorkspace(rows: count, config: config, bfloat16: dtype == .bfloat16)
        let firstX = firsts.states.pointer, firstHalves = firsts.halves?.x.pointer
        let queries = firsts.qkv.pointer
        for s in 0..<count {
            if starts[s + 1] > starts[s] {
                (firstX + s * h).update(from: x + starts[s] * h, count: h)
                if let firstHalves, let halves = space.halves { (firstHalves + s * h).update(from: halves.x.pointer + starts[s] * h, count: h) }
            } else {
                (firstX + s * h).update(repeating: 0, count: h)
                if let firstHalves { (firstHalves + s * h).update(repeating: 0, count: h) }
            }
        }
        product(firstX, firstHalves, rows: count, last.qkv, outputRows: 0..<h, into: queries, ldc: h)
        EncoderKernels.firstRowAttention(queries: queries, qkv: space.qkv.pointer, bias: last.qkvBias.pointer, starts: starts,
                                         heads: config.headCount, headDim: config.headDim, into: firsts.context.pointer, products: dtype)
        finish(last, rows: count, x: firstX, residualIsOutput: false, into: result.pointer, space: firsts)
        for s in 0..<count where starts[s + 1] == starts[s] { (result.pointer + s * h).update(repeating: 0, count: h) }
        return result
    }

    /// The row offsets of `sequences` packed end to end, after checking their lengths and ids.
    private func packedStarts(_ sequences: [[Int]]) throws -> [Int] {
        var starts = [0]
        for (index, ids) in sequences.enumerated() {
            guard ids.count <= config.maxPositionEmbeddings else {
                throw ModelError("sequence \(index) has \(ids.count) tokens, more than the model's \(config.maxPositionEmbeddings) positions")
            }
            if let bad = ids.first(where: { $0 < 0 || $0 >= config.vocabSize }) {
                throw ModelError("sequence \(index) holds token id \(bad), outside the vocabulary of \(config.vocabSize)")
            }
            starts.append(starts[starts.count - 1] + ids.count)
        }
        return starts
    }

    /// Word + position + token-type embeddings, normalised, into `x` (and its bfloat16 rounding).
    private func embed(_ sequences: [[Int]], starts: [Int], into x: UnsafeMutablePointer<Float>, space: EncoderWorkspace) {
        let h = config.hiddenSize, rows = starts[starts.count - 1]
        let embedded = space.sum.pointer
        for (s, ids) in sequences.enumerated() {
            for (position, id) in ids.enumerated() {
                let out = embedded + (starts[s] + position) * h
                let word = wordEmbeddings.pointer + id * h, place = positionEmbeddings.pointer + position * h
                let type = tokenTypeEmbeddings.pointer
                for c in 0..<h { out[c] = word[c] + type[c] + place[c] }
            }
        }
        EncoderKernels.layerNorm(embedded, weight: embeddingNorm.weight.pointer, bias: embeddingNorm.bias.pointer,
                                 rows: rows, dim: h, eps: config.layerNormEps, into: x, bfloat16: space.halves?.x.pointer)
    }

    /// One layer over all rows of the packed batch, `x` replaced by its output. In bfloat16 the
    /// normalised rows and the activations are rounded as they are made, for the next product.
    private func run(_ layer: Layer, rows: Int, starts: [Int], x: UnsafeMutablePointer<Float>, space: EncoderWorkspace) {
        // In bfloat16 on oneDNN the stacked projection adds its bias and rounds in its epilogue,
        // straight into the rows attention reads.
        var fused = false
        if let halves = space.halves, let w = layer.qkv.bfloat16 {
            fused = BLAS.linearBiasBF16(halves.x.pointer, rows: rows, weight: w.pointer, outFeatures: 3 * config.hiddenSize,
                                        inFeatures: config.hiddenSize, bias: layer.qkvBias.pointer, gelu: false, into: halves.qkv.pointer)
        }
        // With int8 products the product adds the bias itself, while its rows are still in cache.
        var biased = fused
        if !fused {
            if case let .int8(quantized) = layer.qkv {
                quantized.product(x, rows: rows, into: space.qkv.pointer, bias: layer.qkvBias.pointer)
                biased = true
            } else {
                linear(x, space.halves?.x.pointer, rows: rows, layer.qkv, into: space.qkv.pointer)
            }
        }
        EncoderKernels.bidirectionalAttention(qkv: space.qkv.pointer, bias: biased ? nil : layer.qkvBias.pointer, starts: starts,
                                              heads: config.headCount, headDim: config.headDim, into: space.context.pointer, products: dtype,
                                              roundedScratch: space.halves?.qkv.pointer, roundedAlready: fused)
        finish(layer, rows: rows, x: x, residualIsOutput: true, into: x, space: space)
    }

    /// The rest of a layer after attention (context in `space.context`): output projection,
    /// residual and LayerNorm, the GELU MLP, residual and LayerNorm, into `out` (which may be `x`)
    /// and, in bfloat16, its rounding `space.halves.x` (only when `out` is `x`).
    private func finish(_ layer: Layer, rows: Int, x: UnsafeMutablePointer<Float>, residualIsOutput: Bool,
                        into out: UnsafeMutablePointer<Float>, space: EncoderWorkspace) {
        let h = config.hiddenSize, halves = space.halves
        let context = space.context.pointer, sum = space.sum.pointer, attended = space.attended.pointer, inner = space.inner.pointer
        // Each sublayer's projection writes `sum`; the residual and its bias join in the LayerNorm's pass.
        if let halves { BFloat16Storage.round(context, into: halves.context.pointer, count: rows * h) }
        linear(context, halves?.context.pointer, rows: rows, layer.attentionOutput, into: sum)
        EncoderKernels.residualLayerNorm(sum, residual: x, bias: layer.attentionOutputBias.pointer, weight: layer.attentionNorm.weight.pointer,
                                         normBias: layer.attentionNorm.bias.pointer, rows: rows, dim: h, eps: config.layerNormEps,
                                         into: attended, bfloat16: halves?.attended.pointer)
        // In bfloat16 on oneDNN the intermediate product adds its bias, applies GELU and rounds in
        // its own epilogue (only the rounding is read next); int8 products add the bias and apply
        // GELU per block while it is in cache; otherwise three passes.
        if let halves, let w = layer.intermediate.bfloat16,
           BLAS.linearBiasBF16(halves.attended.pointer, rows: rows, weight: w.pointer, outFeatures: config.intermediateSize,
                               inFeatures: h, bias: layer.intermediateBias.pointer, gelu: true, into: halves.inner.pointer) {
        } else if case let .int8(quantized) = layer.intermediate {
            quantized.product(attended, rows: rows, into: inner, bias: layer.intermediateBias.pointer, gelu: true)
        } else {
            linear(attended, halves?.attended.pointer, rows: rows, layer.intermediate, into: inner)
            EncoderKernels.biasGELU(inner, bias: layer.intermediateBias.pointer, rows: rows, cols: config.intermediateSize,
                                    bfloat16: halves?.inner.pointer)
        }
        linear(inner, halves?.inner.pointer, rows: rows, layer.output, into: sum)
        EncoderKernels.residualLayerNorm(sum, residual: attended, bias: layer.outputBias.pointer, weight: layer.outputNorm.weight.pointer,
                                         normBias: layer.outputNorm.bias.pointer, rows: rows, dim: h, eps: config.layerNormEps,
                                         into: out, bfloat16: residualIsOutput ? halves?.x.pointer : nil)
    }

    /// `c[:, 0..<outputRows.count] = input · weight[outputRows]ᵀ` (row stride `ldc`): some output
    /// features of a linear layer, from the input's bfloat16 rounding with a bfloat16 weight.
    private func product(_ input: UnsafeMutablePointer<Float>, _ rounded: UnsafeMutablePointer<UInt16>?, rows: Int, _ layerWeight: Weight,
                         outputRows: Range<Int>, into c: UnsafeMutablePointer<Float>, ldc: Int) {
        let weight: WeightMatrix
        switch layerWeight {
        case let .int8(quantized):
            quantized.product(input, rows: rows, outputs: outputRows, into: c, ldy: ldc)
            return
        case let .matrix(matrix): weight = matrix
        }
        let inFeatures = weight.shape[1], offset = outputRows.lowerBound * inFeatures
        if let rounded, let w = weight.bfloat16 {
            BLAS.gemmBF16(transA: false, transB: true, m: rows, n: outputRows.count, k: inFeatures, a: rounded, lda: inFeatures,
                          b: w.pointer + offset, ldb: inFeatures, beta: 0, c: c, ldc: ldc)
        } else {
            let w = weight.floatValues()
            BLAS.gemm(transA: false, transB: true, m: rows, n: outputRows.count, k: inFeatures, a: input, lda: inFeatures,
                      b: w.pointer + offset, ldb: inFeatures, beta: 0, c: c, ldc: ldc)
        }
    }

    /// `out (+)= input · weightᵀ`, from the input's bfloat16 rounding when one is given (a bfloat16 weight).
    private func linear(_ input: UnsafeMutablePointer<Float>, _ rounded: UnsafeMutablePointer<UInt16>?, rows: Int, _ layerWeight: Weight,
                        into out: UnsafeMutablePointer<Float>, accumulate: Bool = false) {
        let weight: WeightMatrix
        switch layerWeight {
        case let .int8(quantized):
            quantized.product(input, rows: rows, into: out, accumulate: accumulate)
            return
        case let .matrix(matrix): weight = matrix
        }
        if let rounded, let w = weight.bfloat16 {
            let (outFeatures, inFeatures) = (weight.shape[0], weight.shape[1])
            BLAS.gemmBF16(transA: false, transB: true, m: rows, n: outFeatures, k: inFeatures, a: rounded, lda: inFeatures,
                          b: w.pointer, ldb: inFeatures, beta: accumulate ? 1 : 0, c: out, ldc: outFeatures)
        } else {
            BLAS.linear(input, rows: rows, weight: weight, into: out, accumulate: accumulate)
        }
    }
}
