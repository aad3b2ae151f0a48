import Foundation
import RefineryCore
import RefineryData
import RefineryModel

/// A local reward model or classifier applied to dataset samples: a Llama-family
/// `*ForSequenceClassification` scores each conversation through its chat template; a BERT-family
/// classifier scores the instruction and answer (or one field).
public struct SampleScorer: Sendable {
    enum Model: Sendable {
        case decoder(LlamaSequenceScorer)
        case encoder(BertSequenceClassifier)
    }
    let model: Model
    /// What an encoder scores.
    public let text: EmbeddedText
    /// Names of the outputs.
    public var labels: [String] {
        switch model {
        case let .decoder(scorer): return scorer.labels
        case let .encoder(classifier): return classifier.labels
        }
    }

    /// Loads the checkpoint in `directory`, choosing the family from its `config.json`.
    public init(directory: URL, dtype: DTypeChoice = .auto, field: String? = nil) throws {
        try self.init(directory: directory, precision: .float(dtype), field: field)
    }

    /// Loads the checkpoint in `directory` in `precision` (`int8` only for a BERT-family classifier).
    public init(directory: URL, precision: ScorerPrecision, field: String? = nil) throws {
        let url = directory.appendingPathComponent("config.json")
        guard let data = try? Data(contentsOf: url) else {
            throw CoreError("no config.json in \(directory.path): point the scorer at a *ForSequenceClassification folder")
        }
        if (try? JSONValue.parse(bytes: Array(data)))?["model_type"]?.stringValue == "bert" {
            switch precision {
            case .int8: model = .encoder(try BertSequenceClassifier(directory: directory, dtype: .float32, int8Products: true))
            case let .float(dtype): model = .encoder(try BertSequenceClassifier(directory: directory, dtype: dtype))
            }
            text = field.map(EmbeddedText.field) ?? .instructionAndAnswer
        } else {
            guard field == nil else { throw CoreError("a field applies to BERT-family classifiers; a reward model scores the whole conversation") }
            guard case let .float(dtype) = precision else {
                throw CoreError("int8 products are for BERT-family classifiers; \(directory.path) is a reward model: use auto, float32 or bfloat16")
            }
            model = .decoder(try LlamaSequenceScorer(directory: directory, dtype: dtype))
            text = .instructionAndAnswer
        }
    }

    /// Every line's outputs, in order; `source` names the input in errors, `progress` counts
    /// samples, `warn` hears of samples longer than a reward model's trained context (scored
    /// whole, as transformers does, but less reliably).
    public func scores(_ lines: [DatasetLine], source: String, progress: (Int) -> Void = { _ in },
                       warn: (String) -> Void = { _ in }) throws -> [[Float]] {
        switch model {
        case let .encoder(classifier):
            return try classifier.logits(try text.texts(of: lines, source: source), progress: progress)
        case let .decoder(scorer):
            let ids = try lines.map { line -> [Int] in
                switch line.sample {
                case let .chat(messages): return try scorer.tokenIDs(messages)
                case let .text(text): return scorer.chat.tokenizer.encode(text).ids
                }
            }
            if let note = Self.contextNote(lengths: ids.map(\.count), lines: lines, context: scorer.model.config.maxPositionEmbeddings, source: source) {
                warn(note)
            }
            return try scorer.scores(ids, progress: progress)
        }
    }

    /// "N samples are longer than …" when any of `lengths` exceeds `context`, naming the longest.
    static func contextNote(lengths: [Int], lines: [DatasetLine], context: Int, source: String) -> String? {
        let over = lengths.indices.filter { lengths[$0] > context }
        guard let longest = over.max(by: { lengths[$0] < lengths[$1] }) else { return nil }
        return "\(over.count) of \(lengths.count) samples are longer than the model's \(context) positions (max_position_embeddings); "
            + "the longest, \(source):\(lines[longest].lineNumber), has \(lengths[longest]) tokens. They are scored whole, "
            + "but past the trained context a score says little: drop or shorten them first (`refinery data filter --max-instruction-tokens N --max-answer-tokens N --tokenizer MODEL`)"
    }
}
