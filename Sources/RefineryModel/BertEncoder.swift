import Foundation
import RefineryTensor

/// A BERT-family encoder (`BertModel`): word + absolute position + token-type embeddings with
/// LayerNorm, then post-norm layers of bidirectional attention and a GELU MLP.
///
/// Sequences run packed: the rows of every sequence of a batch lie end to end and each attends
/// only to its own rows, so there is no padding and no mask — the same values as transformers'
/// padded batch with an attention mask, without the padded work. Products run in the weights'
/// precision (bfloat16 operands with float32 sums, or float32); LayerNorm, softmax and GELU in float32.
public final class BertEncoder: @unchecked Sendable {
    /// The architecture.
    public let config: BertConfig
    /// The precision of the products.
    public let dtype: ComputeDType
    let wordEmbeddings: Tensor
    let positionEmbeddings: Tensor
    let tokenTypeEmbeddings: Tensor
    let embeddingNorm: (weight: Tensor, bias: Tensor)
    let layers: [Layer]
    /// Scratch buffers kept between calls.
    private let workspaces = EncoderWorkspaces()

    struct Layer {
        /// Queries, keys and values stacked: `[3 × hidden, hidden]`, one product for all three.
        let qkv: WeightMatrix
        let qkvBias: Tensor
        let attentionOutput: WeightMatrix
        let attentionOutputBias: Tensor
        let attentionNorm: (weight: Tensor, bias: Tensor)
        let intermediate: WeightMatrix
        let intermediateBias: Tensor
        let output: WeightMatrix
        let outputBias: Tensor
        let outputNorm: (weight: Tensor, bias: Tensor)
    }

    /// Loads the weights of `checkpoint` (names with or without the `bert.` prefix of task models).
    public init(config: BertConfig, checkpoint: Checkpoint, dtype: ComputeDType) throws {
        self.config = config
        self.dtype = dtype
        let prefix = checkpoint.contains("embeddings.word_embeddings.weight") || !checkpoint.contains("bert.embeddings.word_embeddings.weight")
            ? "" : "bert."
        let h = config.hiddenSize, inner = config.intermediateSize
        func vector(_ name: String, _ count: Int) throws -> Tensor { try checkpoint.tensor(prefix + name, shape: [count]) }
        func norm(_ name: String) throws -> (weight: Tensor, bias: Tensor) {
            (try vector(name + ".weight", h), try vector(name + ".bias", h))
        }
        func matrix(_ name: String, _ shape: [Int]) throws -> WeightMatrix {
            try checkpoint.matrix(prefix + name, shape: shape, dtype: dtype, keepFloat: false)
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
                qkv: WeightMatrix(stacked, dtype: dtype, keepFloat: false), qkvBias: stackedBias,
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
        let h = config.hiddenSize
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
        let rows = starts[starts.count - 1]
        let x = Tensor(uninitialized: [rows, h])
        guard rows > 0 else { return (x, starts) }
        let space = workspaces.take(rows: rows, config: config, bfloat16: dtype == .bfloat16)
        defer { workspaces.giveBack(space) }
        let qkv = space.qkv.pointer, context = space.context.pointer, sum = space.sum.pointer
        let attended = space.attended.pointer, inner = space.inner.pointer
        // In bfloat16 the normalised rows and the activations are rounded as they are made, for the next product.
        let halves = space.halves
        let embedded = sum
        for (s, ids) in sequences.enumerated() {
            for (position, id) in ids.enumerated() {
                let out = embedded + (starts[s] + position) * h
                let word = wordEmbeddings.pointer + id * h, place = positionEmbeddings.pointer + position * h
                let type = tokenTypeEmbeddings.pointer
                for c in 0..<h { out[c] = word[c] + type[c] + place[c] }
            }
        }
        EncoderKernels.layerNorm(embedded, weight: embeddingNorm.weight.pointer, bias: embeddingNorm.bias.pointer,
                                 rows: rows, dim: h, eps: config.layerNormEps, into: x.pointer, bfloat16: halves?.x.pointer)
        for layer in layers {
            linear(x.pointer, halves?.x.pointer, rows: rows, layer.qkv, into: qkv)
            EncoderKernels.bidirectionalAttention(qkv: qkv, bias: layer.qkvBias.pointer, starts: starts, heads: config.headCount,
                                                  headDim: config.headDim, into: context, products: dtype,
                                                  roundedScratch: halves?.qkv.pointer)
            EncoderKernels.sumBias(x.pointer, bias: layer.attentionOutputBias.pointer, rows: rows, cols: h, into: sum)
            if let halves { BFloat16Storage.round(context, into: halves.context.pointer, count: rows * h) }
            linear(context, halves?.context.pointer, rows: rows, layer.attentionOutput, into: sum, accumulate: true)
            EncoderKernels.layerNorm(sum, weight: layer.attentionNorm.weight.pointer, bias: layer.attentionNorm.bias.pointer,
                                     rows: rows, dim: h, eps: config.layerNormEps, into: attended, bfloat16: halves?.attended.pointer)
            linear(attended, halves?.attended.pointer, rows: rows, layer.intermediate, into: inner)
            EncoderKernels.biasGELU(inner, bias: layer.intermediateBias.pointer, rows: rows, cols: config.intermediateSize,
                                    bfloat16: halves?.inner.pointer)
            EncoderKernels.sumBias(attended, bias: layer.outputBias.pointer, rows: rows, cols: h, into: sum)
            linear(inner, halves?.inner.pointer, rows: rows, layer.output, into: sum, accumulate: true)
            EncoderKernels.layerNorm(sum, weight: layer.outputNorm.weight.pointer, bias: layer.outputNorm.bias.pointer,
                                     rows: rows, dim: h, eps: config.layerNormEps, into: x.pointer, bfloat16: halves?.x.pointer)
        }
        return (x, starts)
    }

    /// `out (+)= input · weightᵀ`, from the input's bfloat16 rounding when one is given (a bfloat16 weight).
    private func linear(_ input: UnsafeMutablePointer<Float>, _ rounded: UnsafeMutablePointer<UInt16>?, rows: Int, _ weight: WeightMatrix,
                        into out: UnsafeMutablePointer<Float>, accumulate: Bool = false) {
        if let rounded, let w = weight.bfloat16 {
            let (outFeatures, inFeatures) = (weight.shape[0], weight.shape[1])
            BLAS.gemmBF16(transA: false, transB: true, m: rows, n: outFeatures, k: inFeatures, a: rounded, lda: inFeatures,
                          b: w.pointer, ldb: inFeatures, beta: accumulate ? 1 : 0, c: out, ldc: outFeatures)
        } else {
            BLAS.linear(input, rows: rows, weight: weight, into: out, accumulate: accumulate)
        }
    }
}
