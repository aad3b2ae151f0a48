import Foundation
import RefineryCore

/// How a sentence-transformers model turns token states into one vector per text.
public enum SentencePooling: String, Sendable, CaseIterable {
    case mean
    case cls
    case max
    case meanSqrtLength = "mean_sqrt_len_tokens"
    case weightedMean = "weightedmean"
    case lastToken = "lasttoken"
}

/// What a sentence-transformers folder asks for: where the encoder is, the pooling, whether the
/// result is normalised, the longest input and lowercasing. Read from `modules.json`,
/// `1_Pooling/config.json` (old boolean flags or the newer `pooling_mode`), `sentence_bert_config.json`
/// and `tokenizer_config.json`; a plain BERT folder without `modules.json` gets mean pooling
/// without normalisation, as sentence-transformers builds for it.
public struct SentenceEmbedderLayout: Sendable, Equatable {
    /// The folder of the encoder (config, weights, tokenizer).
    public var encoderDirectory: URL
    public var pooling: SentencePooling
    public var normalize: Bool
    /// Tokens kept per text, special tokens included (before the model's position limit).
    public var maxSequenceLength: Int?
    /// Lowercase texts before tokenizing (`do_lower_case`).
    public var lowercase: Bool

    /// Reads the layout of `directory`.
    public init(directory: URL) throws {
        let fm = FileManager.default
        let modulesURL = directory.appendingPathComponent("modules.json")
        var encoderDirectory = directory
        var pooling: SentencePooling? = nil
        var normalize = false
        if fm.fileExists(atPath: modulesURL.path) {
            let modules = try Self.json(modulesURL)
            guard let list = modules.arrayValue else { throw ModelError("\(modulesURL.path) is not a JSON array of modules") }
            var sawEncoder = false
            for (index, module) in list.enumerated() {
                guard let type = module["type"]?.stringValue else {
                    throw ModelError("\(modulesURL.path): module \(index) has no \"type\"")
                }
                let path = module["path"]?.stringValue ?? ""
                guard !path.hasPrefix("/"), !path.split(separator: "/").contains("..") else {
                    throw ModelError("\(modulesURL.path): module \(index) path \"\(path)\" leaves the model folder")
                }
                let moduleDirectory = path.isEmpty ? directory : directory.appendingPathComponent(path)
                switch type.split(separator: ".").last.map(String.init) ?? type {
                case "Transformer":
                    guard !sawEncoder else { throw ModelError("\(modulesURL.path) lists two Transformer modules") }
                    sawEncoder = true
                    encoderDirectory = moduleDirectory
                case "Pooling":
                    pooling = try Self.pooling(moduleDirectory.appendingPathComponent("config.json"))
                case "Normalize":
                    normalize = true
                default:
                    throw ModelError("\(modulesURL.path): module \(index) is \(type); Refinery's embedder runs Transformer, Pooling and Normalize modules only")
                }
            }
            guard sawEncoder else { throw ModelError("\(modulesURL.path) lists no Transformer module") }
        }
        self.encoderDirectory = encoderDirectory
        self.pooling = pooling ?? .mean
        self.normalize = normalize
        var maxLength: Int? = nil
        var lowercase = false
        let sbert = encoderDirectory.appendingPathComponent("sentence_bert_config.json")
        if fm.fileExists(atPath: sbert.path) {
            let config = try Self.json(sbert)
            if let value = config["max_seq_length"], !value.isNull {
                guard let length = value.intValue, length > 0 else {
                    throw ModelError("\(sbert.path): max_seq_length must be a positive integer, found \(value.compactText)")
                }
                maxLength = length
            }
            lowercase = config["do_lower_case"]?.boolValue ?? false
        }
        let tokenizerConfig = encoderDirectory.appendingPathComponent("tokenizer_config.json")
        if maxLength == nil, fm.fileExists(atPath: tokenizerConfig.path),
           let length = try Self.json(tokenizerConfig)["model_max_length"]?.intValue, length > 0, length < 1_000_000 {
            maxLength = length
        }
        maxSequenceLength = maxLength
        self.lowercase = lowercase
    }

    static func json(_ url: URL) throws -> JSONValue {
        do { return try JSONValue.parse(bytes: Array(try Data(contentsOf: url))) } catch {
            throw ModelError("\(url.path) is not readable JSON: \(error)")
        }
    }

    /// The pooling of a `Pooling` module's config, old or new style.
    static func pooling(_ url: URL) throws -> SentencePooling {
        guard FileManager.default.fileExists(atPath: url.path) else { return .mean }
        let config = try json(url)
        if let mode = config["pooling_mode"]?.stringValue {
            let spelled = mode == "mean_sqrt_len" ? "mean_sqrt_len_tokens" : mode
            guard let pooling = SentencePooling(rawValue: spelled) else {
                throw ModelError("\(url.path): pooling_mode \"\(mode)\" is not supported (supported: \(SentencePooling.allCases.map(\.rawValue).joined(separator: ", ")))")
            }
            return pooling
        }
        let flags: [(String, SentencePooling)] = [
            ("pooling_mode_cls_token", .cls), ("pooling_mode_mean_tokens", .mean), ("pooling_mode_max_tokens", .max),
            ("pooling_mode_mean_sqrt_len_tokens", .meanSqrtLength), ("pooling_mode_weightedmean_tokens", .weightedMean),
            ("pooling_mode_lasttoken", .lastToken),
        ]
        let chosen = flags.filter { config[$0.0]?.boolValue == true }
        guard chosen.count <= 1 else {
            throw ModelError("\(url.path) turns on \(chosen.map(\.0).joined(separator: " and ")); Refinery pools one way at a time")
        }
        return chosen.first?.1 ?? .mean
    }
}
