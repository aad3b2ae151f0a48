import Foundation
import RefineryTensor
import RefineryText

/// A local sentence-embedding model loaded from a sentence-transformers folder (or a plain BERT
/// folder): WordPiece tokenizer, BERT encoder, pooling and optional normalisation — the vectors
/// `SentenceTransformer.encode` gives.
///
/// Texts are tokenized in parallel, sorted by length and run in packed batches of about
/// `batchTokens` tokens (no padding); results come back in the input order.
public final class SentenceEmbedder: @unchecked Sendable {
    public let encoder: BertEncoder
    public let tokenizer: Tokenizer
    public let layout: SentenceEmbedderLayout
    /// Tokens kept per text, special tokens included.
    public let maxSequenceLength: Int

    /// Loads the model in `directory` with products in `dtype` (`auto` follows the stored weights).
    public init(directory: URL, dtype: DTypeChoice = .auto) throws {
        guard FileManager.default.fileExists(atPath: directory.path) else {
            throw ModelError("embedding model folder \(directory.path) does not exist; point --model at a sentence-transformers folder (e.g. all-MiniLM-L6-v2)")
        }
        layout = try SentenceEmbedderLayout(directory: directory)
        let config = try BertConfig.load(directory: layout.encoderDirectory)
        let checkpoint = try Checkpoint(directory: layout.encoderDirectory)
        let resolved: ComputeDType
        switch dtype {
        case .fixed(let chosen): resolved = chosen
        case .auto: resolved = checkpoint.storedDType == .bf16 ? .bfloat16 : .float32
        }
        encoder = try BertEncoder(config: config, checkpoint: checkpoint, dtype: resolved)
        let tokenizerURL = layout.encoderDirectory.appendingPathComponent("tokenizer.json")
        guard FileManager.default.fileExists(atPath: tokenizerURL.path) else {
            throw ModelError("no tokenizer.json in \(layout.encoderDirectory.path): the embedding model needs its fast-tokenizer file")
        }
        tokenizer = try Tokenizer(contentsOf: tokenizerURL)
        maxSequenceLength = min(layout.maxSequenceLength ?? config.maxPositionEmbeddings, config.maxPositionEmbeddings)
        guard maxSequenceLength >= 2 else {
            throw ModelError("\(directory.path): a maximum sequence length of \(maxSequenceLength) leaves no room for text")
        }
    }

    /// Width of the vectors.
    public var dimension: Int { encoder.config.hiddenSize }

    /// The token ids the encoder sees for `text` (special tokens added, cut to `maxSequenceLength`).
    public func tokenIDs(_ text: String) -> [Int] {
        tokenizer.encode(layout.lowercase ? text.lowercased() : text, truncatingTo: maxSequenceLength).ids
    }

    /// The vectors of `texts`, in order. `progress` is told how many texts are done after each batch.
    public func embed(_ texts: [String], batchTokens: Int = 4096, progress: (Int) -> Void = { _ in }) throws -> [[Float]] {
        if texts.isEmpty { return [] }
        let ids = ParallelTokenization.ids(texts) { self.tokenIDs($0) }
        let lengths = ids.map(\.count)
        let order = (0..<texts.count).sorted { (a: Int, b: Int) -> Bool in
            lengths[a] != lengths[b] ? lengths[a] < lengths[b] : a < b
        }
        var results = [[Float]](repeating: [], count: texts.count)
        var done = 0
        var start = 0
        while start < order.count {
            var end = start, tokens = 0
            while end < order.count && (end == start || tokens + lengths[order[end]] <= batchTokens) {
                tokens += lengths[order[end]]
                end += 1
            }
            let batch = Array(order[start..<end])
            let (states, starts) = try encoder.hiddenStates(batch.map { ids[$0] })
            for (k, index) in batch.enumerated() {
                results[index] = pool(states, rows: starts[k]..<starts[k + 1])
            }
            done += batch.count
            progress(done)
            start = end
        }
        return results
    }

    /// One text's vector from its rows of `states`.
    func pool(_ states: Tensor, rows: Range<Int>) -> [Float] {
        let h = dimension
        var vector = [Float](repeating: 0, count: h)
        let n = rows.count
        guard n > 0 else { return vector }
        let base = states.pointer
        switch layout.pooling {
        case .cls:
            for c in 0..<h { vector[c] = base[rows.lowerBound * h + c] }
        case .lastToken:
            for c in 0..<h { vector[c] = base[(rows.upperBound - 1) * h + c] }
        case .max:
            for c in 0..<h { vector[c] = base[rows.lowerBound * h + c] }
            for row in rows.dropFirst() { for c in 0..<h { vector[c] = Swift.max(vector[c], base[row * h + c]) } }
        case .mean, .meanSqrtLength, .weightedMean:
            var weightSum: Float = 0
            for (k, row) in rows.enumerated() {
                let weight: Float = layout.pooling == .weightedMean ? Float(k + 1) : 1
                weightSum += weight
                for c in 0..<h { vector[c] += weight * base[row * h + c] }
            }
            let divisor = layout.pooling == .meanSqrtLength ? Float(n).squareRoot() : weightSum
            for c in 0..<h { vector[c] /= divisor }
        }
        if layout.normalize {
            var squares: Float = 0
            for value in vector { squares += value * value }
            let scale = 1 / Swift.max(squares.squareRoot(), 1e-12)
            for c in 0..<h { vector[c] *= scale }
        }
        return vector
    }
}
