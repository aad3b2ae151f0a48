import Foundation
import RefineryCore
import RefineryTensor
import RefineryText

/// A BERT-family sequence classifier (`BertForSequenceClassification`): the encoder, the pooler
/// (`tanh(W · h[CLS] + b)`) and a linear classifier — one output for regression heads such as
/// fineweb-edu-classifier's, or one logit per class. Logits as transformers computes them.
public final class BertSequenceClassifier: @unchecked Sendable {
    public let encoder: BertEncoder
    public let tokenizer: Tokenizer
    /// Names of the outputs (`id2label`, in id order).
    public let labels: [String]
    /// `regression`, `single_label_classification`, `multi_label_classification`, or nil when unset.
    public let problemType: String?
    /// Tokens kept per text, special tokens included.
    public let maxLength: Int
    let pooler: (weight: WeightMatrix, bias: Tensor)
    let classifier: (weight: WeightMatrix, bias: Tensor)

    /// Loads a Hugging Face folder with a `BertForSequenceClassification` checkpoint; with
    /// `int8Products` the encoder's layers run dynamically quantized (`BertEncoder`), the rest in float32.
    public init(directory: URL, dtype: DTypeChoice = .auto, int8Products: Bool = false) throws {
        let json = try ModelConfig.json(directory: directory)
        let config = try BertConfig.parse(json, directory: directory)
        let architecture = json["architectures"]?.arrayValue?.first?.stringValue ?? ""
        guard architecture.hasSuffix("ForSequenceClassification") else {
            throw ModelError("\(directory.path) is not a sequence classifier (architectures: \(architecture.isEmpty ? "none" : architecture)); expected BertForSequenceClassification")
        }
        let checkpoint = try Checkpoint(directory: directory)
        let resolved: ComputeDType
        switch dtype {
        case .fixed(let chosen): resolved = chosen
        case .auto: resolved = int8Products || checkpoint.storedDType != .bf16 ? .float32 : .bfloat16
        }
        encoder = try BertEncoder(config: config, checkpoint: checkpoint, dtype: resolved, int8Products: int8Products)
        let h = config.hiddenSize
        guard let classifierShape = checkpoint.shape(of: "classifier.weight"), classifierShape.count == 2, classifierShape[1] == h,
              classifierShape[0] >= 1 else {
            throw ModelError("\(directory.path) lacks a classifier.weight of shape [labels, \(h)]")
        }
        let outputs = classifierShape[0]
        pooler = (try checkpoint.matrix("bert.pooler.dense.weight", shape: [h, h], dtype: resolved, keepFloat: false),
                  try checkpoint.tensor("bert.pooler.dense.bias", shape: [h]))
        classifier = (try checkpoint.matrix("classifier.weight", shape: [outputs, h], dtype: resolved, keepFloat: false),
                      try checkpoint.tensor("classifier.bias", shape: [outputs]))
        let names = json["id2label"]?.objectValue ?? []
        labels = (0..<outputs).map { id in names.first { $0.0 == String(id) }?.1.stringValue ?? "LABEL_\(id)" }
        problemType = json["problem_type"]?.stringValue
        let tokenizerURL = directory.appendingPathComponent("tokenizer.json")
        guard FileManager.default.fileExists(atPath: tokenizerURL.path) else {
            throw ModelError("no tokenizer.json in \(directory.path): the classifier needs its fast-tokenizer file")
        }
        tokenizer = try Tokenizer(contentsOf: tokenizerURL)
        let layout = try SentenceEmbedderLayout(directory: directory)
        maxLength = min(layout.maxSequenceLength ?? config.maxPositionEmbeddings, config.maxPositionEmbeddings)
    }

    /// The token ids the encoder sees for `text`.
    public func tokenIDs(_ text: String) -> [Int] { tokenizer.encode(text, truncatingTo: maxLength).ids }

    /// The logits of `texts`, in order (one row of `labels.count` values per text).
    public func logits(_ texts: [String], batchTokens: Int = 4096, progress: (Int) -> Void = { _ in }) throws -> [[Float]] {
        let ids = ParallelTokenization.ids(texts) { self.tokenIDs($0) }
        let order = ids.indices.sorted { ids[$0].count != ids[$1].count ? ids[$0].count < ids[$1].count : $0 < $1 }
        var results = [[Float]](repeating: [], count: texts.count)
        let h = encoder.config.hiddenSize, outputs = labels.count
        var start = 0
        while start < order.count {
            var end = start, tokens = 0
            while end < order.count && (end == start || tokens + ids[order[end]].count <= batchTokens) {
                tokens += ids[order[end]].count
                end += 1
            }
            let batch = Array(order[start..<end])
            let first = try encoder.firstTokenStates(batch.map { ids[$0] })
            let pooled = Tensor(uninitialized: [batch.count, h])
            BLAS.linear(first.pointer, rows: batch.count, weight: pooler.weight, into: pooled.pointer)
            for k in batch.indices {
                for c in 0..<h { pooled.pointer[k * h + c] = tanh(pooled.pointer[k * h + c] + pooler.bias.pointer[c]) }
            }
            let out = Tensor(uninitialized: [batch.count, outputs])
            BLAS.linear(pooled.pointer, rows: batch.count, weight: classifier.weight, into: out.pointer)
            for (k, index) in batch.enumerated() {
                results[index] = (0..<outputs).map { out.pointer[k * outputs + $0] + classifier.bias.pointer[$0] }
            }
            start = end
            progress(start)
        }
        return results
    }
}
