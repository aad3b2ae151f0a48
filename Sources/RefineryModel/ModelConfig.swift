import Foundation
import RefineryCore
import RefineryText

/// How rotary frequencies are scaled (`rope_scaling` / `rope_parameters`).
public enum RopeScaling: Sendable, Equatable {
    case none
    case linear(factor: Double)
    case llama3(factor: Double, lowFreqFactor: Double, highFreqFactor: Double, originalMaxPositions: Int)
}

/// The parts of a Hugging Face `config.json` that define a Llama-family decoder.
public struct ModelConfig: Sendable, Equatable {
    public var modelType: String
    public var vocabSize: Int
    public var hiddenSize: Int
    public var intermediateSize: Int
    public var layerCount: Int
    public var headCount: Int
    public var kvHeadCount: Int
    public var headDim: Int
    public var rmsNormEps: Float
    public var ropeTheta: Double
    public var ropeScaling: RopeScaling
    public var tieWordEmbeddings: Bool
    /// Bias on q/k/v projections (Qwen2 always; Llama with `attention_bias`).
    public var qkvBias: Bool
    /// Bias on the output projection (Llama with `attention_bias`).
    public var outputBias: Bool
    /// Bias on the MLP projections (Llama `mlp_bias`).
    public var mlpBias: Bool
    public var maxPositionEmbeddings: Int
    public var bosTokenID: Int?
    public var eosTokenIDs: [Int]
    /// The dtype the weights are stored in (`torch_dtype` / `dtype`), e.g. "bfloat16".
    public var storedDType: String?

    /// Architectures this engine runs.
    public static let supportedTypes = ["llama", "mistral", "qwen2"]

    /// Reads `config.json` in `directory`.
    public static func load(directory: URL) throws -> ModelConfig {
        try parse(json(directory: directory), directory: directory)
    }

    /// The parsed `config.json` of `directory` (read once by callers that need more than this type reads).
    static func json(directory: URL) throws -> JSONValue {
        let url = directory.appendingPathComponent("config.json")
        guard FileManager.default.fileExists(atPath: url.path) else {
            throw ModelError("no config.json in \(directory.path): point --model at a Hugging Face model folder")
        }
        do { return try JSONValue.parse(bytes: Array(try Data(contentsOf: url))) } catch {
            throw ModelError("\(url.path) is not valid JSON: \(error)")
        }
    }

    /// `ModelConfig(json:)` with errors naming the folder's config.json.
    static func parse(_ json: JSONValue, directory: URL) throws -> ModelConfig {
        do { return try ModelConfig(json: json) } catch let error as ModelError {
            throw ModelError("\(directory.appendingPathComponent("config.json").path): \(error.message)")
        }
    }

    /// Parses a config object.
    public init(json: JSONValue) throws {
        guard json.objectValue != nil else { throw ModelError("config is not a JSON object") }
        let type = json["model_type"]?.stringValue ?? ""
        guard Self.supportedTypes.contains(type) else {
            throw ModelError("model_type \"\(type)\" is not supported (supported: \(Self.supportedTypes.joined(separator: ", ")); SmolLM and TinyLlama use \"llama\")")
        }
        modelType = type
        func int(_ key: String, default defaultValue: Int? = nil) throws -> Int {
            if let value = json[key], !value.isNull {
                // Every size a real checkpoint has is far below 2^24; a larger one would only overflow
                // the products of sizes (memory plans, tensor shapes) computed from it.
                guard let i = value.intValue, i > 0, i <= 1 << 24 else {
                    throw ModelError("\"\(key)\" must be a positive integer up to 16777216, found \(value.compactText)")
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
        kvHeadCount = try int("num_key_value_heads", default: headCount)
        guard hiddenSize % headCount == 0 || json["head_dim"] != nil else {
            throw ModelError("hidden_size \(hiddenSize) is not divisible by num_attention_heads \(headCount) and no head_dim is given")
        }
        headDim = try int("head_dim", default: hiddenSize / headCount)
        guard headCount % kvHeadCount == 0 else {
            throw ModelError("num_attention_heads \(headCount) is not a multiple of num_key_value_heads \(kvHeadCount)")
        }
        guard headDim % 2 == 0 else { throw ModelError("head_dim \(headDim) must be even for rotary embeddings") }
        rmsNormEps = Float(json["rms_norm_eps"]?.doubleValue ?? 1e-6)
        maxPositionEmbeddings = try int("max_position_embeddings", default: 2048)
        tieWordEmbeddings = json["tie_word_embeddings"]?.boolValue ?? false
        let attentionBias = json["attention_bias"]?.boolValue ?? false
        qkvBias = type == "qwen2" ? true : attentionBias
        outputBias = type == "qwen2" ? false : attentionBias
        mlpBias = json["mlp_bias"]?.boolValue ?? false
        bosTokenID = json["bos_token_id"]?.intValue
        if let list = json["eos_token_id"]?.arrayValue {
            eosTokenIDs = list.compactMap(\.intValue)
        } else {
            eosTokenIDs = json["eos_token_id"]?.intValue.map { [$0] } ?? []
        }
        // transformers ≥ 4.56 writes `dtype`; older versions `torch_dtype`.
        storedDType = json["dtype"]?.stringValue ?? json["torch_dtype"]?.stringValue

        // rope_theta at the top level (transformers ≤ 4.x) or inside rope_parameters (5.x).
        let parameters = json["rope_parameters"].flatMap { $0.isNull ? nil : $0 }
        let scaling = json["rope_scaling"].flatMap { $0.isNull ? nil : $0 } ?? parameters
        ropeTheta = parameters?["rope_theta"]?.doubleValue ?? json["rope_theta"]?.doubleValue ?? 10000
        ropeScaling = try Self.parseScaling(scaling)
    }

    static func parseScaling(_ json: JSONValue?) throws -> RopeScaling {
        guard let json else { return .none }
        let type = json["rope_type"]?.stringValue ?? json["type"]?.stringValue ?? "default"
        switch type {
        case "default": return .none
        case "linear":
            guard let factor = json["factor"]?.doubleValue, factor > 0 else { throw ModelError("linear rope scaling needs a positive \"factor\"") }
            return .linear(factor: factor)
        case "llama3":
            guard let factor = json["factor"]?.doubleValue, let low = json["low_freq_factor"]?.doubleValue,
                  let high = json["high_freq_factor"]?.doubleValue, let original = json["original_max_position_embeddings"]?.intValue,
                  high > low
            else {
                throw ModelError("llama3 rope scaling needs factor, low_freq_factor < high_freq_factor and original_max_position_embeddings")
            }
            return .llama3(factor: factor, lowFreqFactor: low, highFreqFactor: high, originalMaxPositions: original)
        default:
            throw ModelError("rope scaling type \"\(type)\" is not supported (supported: default, linear, llama3)")
        }
    }

    /// Query projection width.
    public var qDim: Int { headCount * headDim }
    /// Key/value projection width.
    public var kvDim: Int { kvHeadCount * headDim }

    /// Rotary inverse frequencies, as transformers computes them (Float32).
    public var inverseFrequencies: [Float] {
        let half = headDim / 2
        var inv = (0..<half).map { i -> Float in
            1 / Float(pow(Float(ropeTheta), Float(2 * i) / Float(headDim)))
        }
        switch ropeScaling {
        case .none: break
        case let .linear(factor): inv = inv.map { $0 / Float(factor) }
        case let .llama3(factor, low, high, original):
            let lowWavelength = Float(original) / Float(low)
            let highWavelength = Float(original) / Float(high)
            inv = inv.map { f in
                let wavelength = 2 * Float.pi / f
                let scaled = wavelength > lowWavelength ? f / Float(factor) : f
                let smooth = (Float(original) / wavelength - Float(low)) / (Float(high) - Float(low))
                let smoothed = (1 - smooth) * scaled / Float(factor) + smooth * scaled
                let isMedium = !(wavelength < highWavelength) && !(wavelength > lowWavelength)
                return isMedium ? smoothed : scaled
            }
        }
        return inv
    }
}
