import Foundation
import RefineryCore
import RefineryTensor
import RefineryText

/// A Llama-family reward model or classifier (`LlamaForSequenceClassification`, and the Mistral
/// and Qwen2 equivalents): the decoder, then `score` (`[outputs, hidden]`, no bias) read at the
/// last token that is not the pad token — transformers' rule, so a conversation ending in an
/// end-of-turn marker that doubles as the pad token is scored at the token before it.
public final class LlamaSequenceScorer: @unchecked Sendable {
    public let model: LlamaModel
    public let chat: ChatTokenizer
    /// Names of the outputs (`id2label`, in id order).
    public let labels: [String]
    public let padTokenID: Int?
    let score: WeightMatrix

    /// Loads a `*ForSequenceClassification` folder; products in `dtype` (`auto` follows the checkpoint).
    public init(directory: URL, dtype: DTypeChoice = .auto) throws {
        let json = try ModelConfig.json(directory: directory)
        let config = try ModelConfig.parse(json, directory: directory)
        let checkpoint = try Checkpoint(directory: directory)
        let h = config.hiddenSize
        guard let shape = checkpoint.shape(of: "score.weight"), shape.count == 2, shape[1] == h, shape[0] >= 1 else {
            throw ModelError("\(directory.path) has no score.weight of shape [outputs, \(h)]: not a *ForSequenceClassification checkpoint (a causal LM has lm_head instead)")
        }
        let resolved = dtype.resolve(config: config, checkpoint: checkpoint)
        model = try LlamaModel(config: config, checkpoint: checkpoint, dtype: resolved, languageModelHead: false)
        score = try checkpoint.matrix("score.weight", shape: shape, dtype: resolved, keepFloat: false)
        let names = json["id2label"]?.objectValue ?? []
        labels = (0..<shape[0]).map { id in names.first { $0.0 == String(id) }?.1.stringValue ?? "LABEL_\(id)" }
        padTokenID = json["pad_token_id"]?.intValue
        chat = try ChatTokenizer(directory: directory)
    }

    /// The token ids of a conversation rendered through the model's chat template.
    public func tokenIDs(_ messages: [ChatMessage]) throws -> [Int] {
        chat.tokenizer.encode(try chat.render(messages), addSpecialTokens: false).ids
    }

    /// The row of `ids` the score is read at: the last token that is not the pad token.
    public func pooledPosition(_ ids: [Int]) -> Int {
        guard let pad = padTokenID else { return max(0, ids.count - 1) }
        return ids.lastIndex { $0 != pad } ?? 0
    }

    /// The outputs for each token sequence, in order; sequences run packed, about `batchTokens` at a time.
    public func scores(_ sequences: [[Int]], batchTokens: Int = 2048, progress: (Int) -> Void = { _ in }) throws -> [[Float]] {
        var results = [[Float]](repeating: [], count: sequences.count)
        let h = model.config.hiddenSize, outputs = labels.count
        var start = 0
        while start < sequences.count {
            var end = start, tokens = 0
            while end < sequences.count && (end == start || tokens + sequences[end].count <= batchTokens) {
                tokens += sequences[end].count
                end += 1
            }
            var packed: [Int] = [], positions: [Int] = [], keyStart: [Int] = [], pooledRows: [Int] = []
            for index in start..<end {
                let ids = sequences[index]
                guard !ids.isEmpty else { throw ModelError("sequence \(index) is empty: nothing to score") }
                pooledRows.append(packed.count + pooledPosition(ids))
                keyStart += Array(repeating: packed.count, count: ids.count)
                positions += Array(ids.indices)
                packed += ids
            }
            let hidden = try model.hiddenStates(tokens: packed, positions: positions, keyStart: keyStart)
            let selected = Tensor(uninitialized: [pooledRows.count, h])
            for (k, row) in pooledRows.enumerated() { (selected.pointer + k * h).update(from: hidden.pointer + row * h, count: h) }
            let out = Tensor(uninitialized: [pooledRows.count, outputs])
            BLAS.linear(selected.pointer, rows: pooledRows.count, weight: score, into: out.pointer)
            for k in pooledRows.indices { results[start + k] = Array(UnsafeBufferPointer(start: out.pointer + k * outputs, count: outputs)) }
            start = end
            progress(start)
        }
        return results
    }
}
