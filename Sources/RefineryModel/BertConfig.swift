import Foundation
import RefineryCore

/// The parts of a Hugging Face `config.json` that define a BERT-family encoder (BERT, MiniLM,
/// BGE, E5, GTE-style checkpoints with `"model_type": "bert"`).
public struct BertConfig: Sendable, Equatable {
    public var vocabSize: Int
    public var hiddenSize: Int
    public var intermediateSize: Int
    public var layerCount: Int
    public var headCount: Int
    public var maxPositionEmbeddings: Int
    public var typeVocabSize: Int
    public var layerNormEps: Float

    /// Reads `config.json` in `directory`.
    public static func load(directory: URL) throws -> BertConfig {
        try parse(ModelConfig.json(directory: directory), directory: directory)
    }

    /// `BertConfig(json:)` with errors naming the folder's config.json.
    static func parse(_ json: JSONValue, directory: URL) throws -> BertConfig {
        do { return try BertConfig(json: json) } catch let error as ModelError {
            throw ModelError("\(directory.appendingPathComponent("config.json").path): \(error.message)")
        }
    }

    /// Parses a config object, refusing what this encoder does not compute.
    public init(json: JSONValue) throws {
        guard json.objectValue != nil else { throw ModelError("config is not a JSON object") }
        let type = json["model_type"]?.stringValue ?? ""
        guard type == "bert" else {
            throw ModelError("model_type \"\(type)\" is not a supported encoder (supported: \"bert\" — BERT, MiniLM, BGE, E5 and the like; RoBERTa, MPNet and DistilBERT are not)")
        }
        func int(_ key: String, default defaultValue: Int? = nil) throws -> Int {
            if let value = json[key], !value.isNull {
                guard let i = value.intValue, i > 0, i < 1 << 24 else {
                    throw ModelError("\"\(key)\" must be a positive integer, found \(value.compactText)")
                }
                return i
            }
            guard let defaultValue else { throw ModelError("missing \"\(key)\"") }
            return defaultValue
        }
        vocabSize = try int("vocab_size")
        hiddenSize = try int("hidden_size")
        intermediateSize = try int("intermediate_size")
        layerCount = try int("num_hidden_layers")
        headCount = try int("num_attention_heads")
        maxPositionEmbeddings = try int("max_position_embeddings", default: 512)
        typeVocabSize = try int("type_vocab_size", default: 2)
        guard hiddenSize % headCount == 0 else {
            throw ModelError("hidden_size \(hiddenSize) is not divisible by num_attention_heads \(headCount)")
        }
        let eps = json["layer_norm_eps"]?.doubleValue ?? 1e-12
        guard eps > 0, eps < 1 else { throw ModelError("\"layer_norm_eps\" must be in (0, 1), found \(eps)") }
        layerNormEps = Float(eps)
        let activation = json["hidden_act"]?.stringValue ?? "gelu"
        guard activation == "gelu" else {
            throw ModelError("hidden_act \"\(activation)\" is not supported (the encoder computes \"gelu\", the exact erf form)")
        }
        let positions = json["position_embedding_type"]?.stringValue ?? "absolute"
        guard positions == "absolute" else {
            throw ModelError("position_embedding_type \"\(positions)\" is not supported (only \"absolute\")")
        }
    }

    /// Width of one attention head.
    public var headDim: Int { hiddenSize / headCount }
}
