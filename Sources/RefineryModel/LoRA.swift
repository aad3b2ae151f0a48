import Foundation
import RefineryCore
import RefineryTensor
import RefineryText

/// The seven linear projections of a decoder layer, by their Hugging Face module names.
public enum LinearSlot: String, CaseIterable, Sendable {
    case q = "self_attn.q_proj", k = "self_attn.k_proj", v = "self_attn.v_proj", o = "self_attn.o_proj"
    case gate = "mlp.gate_proj", up = "mlp.up_proj", down = "mlp.down_proj"

    /// The short name PEFT users write (`q_proj`).
    public var shortName: String { String(rawValue.split(separator: ".").last ?? "") }

    /// `[out, in]` of this projection.
    public func shape(_ c: ModelConfig) -> (out: Int, in: Int) {
        switch self {
        case .q: return (c.qDim, c.hiddenSize)
        case .k, .v: return (c.kvDim, c.hiddenSize)
        case .o: return (c.hiddenSize, c.qDim)
        case .gate, .up: return (c.intermediateSize, c.hiddenSize)
        case .down: return (c.hiddenSize, c.intermediateSize)
        }
    }
}

/// Which modules get LoRA adapters, with PEFT's matching rules.
public enum LoRATargets: Sendable, Equatable {
    /// Every linear layer except the output head.
    case allLinear
    /// Module names: a module matches if its name equals one or ends with "." + one.
    case names([String])
    /// A regular expression that must match the whole module name.
    case regex(String)

    /// Whether the module `name` (e.g. `model.layers.3.self_attn.q_proj`) is targeted.
    public func matches(_ name: String) throws -> Bool {
        switch self {
        case .allLinear: return true
        case let .names(list): return list.contains { name == $0 || name.hasSuffix("." + $0) }
        case let .regex(pattern):
            let regex: NSRegularExpression
            do { regex = try NSRegularExpression(pattern: "^(?:" + pattern + ")$") } catch {
                throw ModelError("target_modules pattern \(pattern) is not a valid regular expression")
            }
            return regex.firstMatch(in: name, range: NSRange(location: 0, length: name.utf16.count)) != nil
        }
    }

    /// Parses the `--targets` flag / `target_modules` value: `all-linear`, a comma list, or (in
    /// adapter_config.json) a regex string.
    public static func parse(flag: String) -> LoRATargets {
        if flag == "all-linear" { return .allLinear }
        return .names(flag.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty })
    }
}

/// LoRA hyperparameters (DESIGN §3.5).
public struct LoRAConfig: Sendable, Equatable {
    public var rank: Int
    public var alpha: Double
    public var dropout: Double
    public var useRSLoRA: Bool
    public var targets: LoRATargets

    public init(rank: Int = 16, alpha: Double = 32, dropout: Double = 0, useRSLoRA: Bool = false, targets: LoRATargets = .allLinear) {
        self.rank = rank
        self.alpha = alpha
        self.dropout = dropout
        self.useRSLoRA = useRSLoRA
        self.targets = targets
    }

    /// `α/r`, or `α/√r` with rsLoRA.
    public var scaling: Float { Float(useRSLoRA ? alpha / Double(rank).squareRoot() : alpha / Double(rank)) }
}

/// One adapted projection: `W·x + s·B·A·x`.
public struct LoRAPair: Sendable {
    /// `[r, in]`
    public let a: Tensor
    /// `[out, r]`
    public let b: Tensor
}

/// A LoRA adapter over a model: `A`/`B` per targeted projection, readable and writable as a PEFT
/// adapter folder.
public final class LoRAAdapter: @unchecked Sendable {
    public let config: LoRAConfig
    /// Keyed by module name without the `base_model.model.` prefix, e.g. `model.layers.0.self_attn.q_proj`.
    public let pairs: [String: LoRAPair]

    static func moduleName(layer: Int, slot: LinearSlot) -> String { "model.layers.\(layer).\(slot.rawValue)" }

    /// The pair for `layer`/`slot`, if that module is adapted.
    public func pair(layer: Int, slot: LinearSlot) -> LoRAPair? { pairs[Self.moduleName(layer: layer, slot: slot)] }

    /// The model the pairs were made or checked for (`initialize`, `load`); nil when unknown.
    public let model: ModelConfig?

    init(config: LoRAConfig, pairs: [String: LoRAPair], model: ModelConfig? = nil) {
        self.config = config
        self.pairs = pairs
        self.model = model
    }

    /// Throws unless every pair has the shapes of its projection in `config`'s model (free when
    /// the adapter was made or loaded for that model).
    public func checkFits(_ config: ModelConfig) throws {
        if model == config { return }
        for layer in 0..<config.layerCount {
            for slot in LinearSlot.allCases {
                guard let pair = pair(layer: layer, slot: slot) else { continue }
                let (outFeatures, inFeatures) = slot.shape(config), rank = pair.a.shape.first ?? 0
                guard pair.a.shape == [rank, inFeatures], pair.b.shape == [outFeatures, rank] else {
                    throw ModelError("the LoRA adapter's \(slot.rawValue) of layer \(layer) does not fit this model")
                }
            }
        }
    }

    /// The modules of `model` that `targets` selects.
    static func targetModules(of model: ModelConfig, targets: LoRATargets) throws -> [(String, Int, LinearSlot)] {
        var result: [(String, Int, LinearSlot)] = []
        for layer in 0..<model.layerCount {
            for slot in LinearSlot.allCases {
                let name = moduleName(layer: layer, slot: slot)
                if try targets.matches(name) { result.append((name, layer, slot)) }
            }
        }
        if result.isEmpty {
            throw ModelError("LoRA target modules \(targets) match no linear layer of this \(model.modelType) model; use names like q_proj,v_proj or all-linear")
        }
        return result
    }

    /// A fresh adapter as PEFT initialises it: `A ~ U(−1/√in, 1/√in)`, `B = 0`.
    public static func initialize(model: ModelConfig, config: LoRAConfig, seed: UInt64) throws -> LoRAAdapter {
        guard config.rank > 0 else { throw ModelError("LoRA rank must be positive") }
        var generator = SplitMix64(seed: seed)
        var pairs: [String: LoRAPair] = [:]
        for (name, _, slot) in try targetModules(of: model, targets: config.targets) {
            let (out, inFeatures) = slot.shape(model)
            let bound = 1 / Float(inFeatures).squareRoot()
            let a = Tensor(zeros: [config.rank, inFeatures])
            for i in 0..<a.count {
                let unit = Float(generator.next() >> 40) / Float(1 << 24)
                a.pointer[i] = (unit * 2 - 1) * bound
            }
            pairs[name] = LoRAPair(a: a, b: Tensor(zeros: [out, config.rank]))
        }
        return LoRAAdapter(config: config, pairs: pairs, model: model)
    }

    static let peftPrefix = "base_model.model."

    /// Loads a PEFT LoRA adapter folder and checks it against `model`.
    public static func load(directory: URL, model: ModelConfig) throws -> LoRAAdapter {
        let configURL = directory.appendingPathComponent("adapter_config.json")
        guard FileManager.default.fileExists(atPath: configURL.path) else {
            throw ModelError("no adapter_config.json in \(directory.path): --init-adapter/--adapter needs a PEFT LoRA adapter folder")
        }
        let json: JSONValue
        do { json = try JSONValue.parse(bytes: Array(try Data(contentsOf: configURL))) } catch {
            throw ModelError("\(configURL.path) is not valid JSON: \(error)")
        }
        func refuse(_ reason: String) -> ModelError { ModelError("\(configURL.path): \(reason)") }
        if let type = json["peft_type"]?.stringValue, type != "LORA" { throw refuse("peft_type \(type) is not LORA") }
        if json["use_dora"]?.boolValue == true { throw refuse("DoRA adapters are not supported") }
        if json["fan_in_fan_out"]?.boolValue == true { throw refuse("fan_in_fan_out adapters are not supported") }
        if let bias = json["bias"]?.stringValue, bias != "none" { throw refuse("bias \"\(bias)\" is not supported (only \"none\")") }
        if let modules = json["modules_to_save"]?.arrayValue, !modules.isEmpty { throw refuse("modules_to_save is not supported") }
        guard let rank = json["r"]?.intValue, rank > 0 else { throw refuse("\"r\" must be a positive integer") }
        let alpha = json["lora_alpha"]?.doubleValue ?? Double(rank)
        let targets: LoRATargets
        if let list = json["target_modules"]?.arrayValue {
            targets = .names(list.compactMap(\.stringValue))
        } else if let text = json["target_modules"]?.stringValue {
            targets = text == "all-linear" ? .allLinear : .regex(text)
        } else {
            throw refuse("no target_modules")
        }
        if let patterns = json["rank_pattern"]?.objectValue, !patterns.isEmpty { throw refuse("rank_pattern is not supported") }
        if let patterns = json["alpha_pattern"]?.objectValue, !patterns.isEmpty { throw refuse("alpha_pattern is not supported") }
        let config = LoRAConfig(rank: rank, alpha: alpha, dropout: json["lora_dropout"]?.doubleValue ?? 0,
                                useRSLoRA: json["use_rslora"]?.boolValue ?? false, targets: targets)
        let weightsPath = directory.appendingPathComponent("adapter_model.safetensors").path
        guard FileManager.default.fileExists(atPath: weightsPath) else {
            throw ModelError("no adapter_model.safetensors in \(directory.path) (adapter_model.bin is not supported)")
        }
        let file = try SafetensorsFile(path: weightsPath)
        let expected = try targetModules(of: model, targets: targets)
        var pairs: [String: LoRAPair] = [:]
        for (name, _, slot) in expected {
            let (out, inFeatures) = slot.shape(model)
            let aName = peftPrefix + name + ".lora_A.weight", bName = peftPrefix + name + ".lora_B.weight"
            guard let aEntry = file.entries[aName], let bEntry = file.entries[bName] else {
                throw ModelError("\(weightsPath) lacks \(aName) or its lora_B: the adapter's target_modules do not match this model")
            }
            guard aEntry.shape == [rank, inFeatures], bEntry.shape == [out, rank] else {
                throw ModelError("\(weightsPath): \(name) has lora_A \(aEntry.shape) and lora_B \(bEntry.shape), but this model needs [\(rank), \(inFeatures)] and [\(out), \(rank)]; the adapter was trained on another model")
            }
            pairs[name] = LoRAPair(a: try file.tensor(aName), b: try file.tensor(bName))
        }
        let known = Set(expected.flatMap { [peftPrefix + $0.0 + ".lora_A.weight", peftPrefix + $0.0 + ".lora_B.weight"] })
        if let stray = file.names.first(where: { !known.contains($0) }) {
            throw ModelError("\(weightsPath) holds \(stray), which is not a LoRA weight of a targeted module of this model")
        }
        return LoRAAdapter(config: config, pairs: pairs, model: model)
    }

    /// Writes `adapter_config.json` and `adapter_model.safetensors` (PEFT's names) into `directory`.
    public func save(directory: URL, baseModel: String) throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let shortNames = Set(pairs.keys.compactMap { $0.split(separator: ".").last.map(String.init) }).sorted()
        let targets: JSONValue
        switch config.targets {
        case .regex(let pattern): targets = .string(pattern)
        default: targets = .array(shortNames.map { .string($0) })
        }
        let json = JSONValue.object([
            ("base_model_name_or_path", .string(baseModel)),
            ("bias", .string("none")),
            ("fan_in_fan_out", .bool(false)),
            ("inference_mode", .bool(true)),
            ("init_lora_weights", .bool(true)),
            ("lora_alpha", config.alpha.rounded() == config.alpha ? .int(Int(config.alpha)) : .double(config.alpha)),
            ("lora_dropout", .double(config.dropout)),
            ("modules_to_save", .null),
            ("peft_type", .string("LORA")),
            ("r", .int(config.rank)),
            ("target_modules", targets),
            ("task_type", .string("CAUSAL_LM")),
            ("use_dora", .bool(false)),
            ("use_rslora", .bool(config.useRSLoRA)),
        ])
        let text = json.prettyText()
        do {
            try Data((text + "\n").utf8).write(to: directory.appendingPathComponent("adapter_config.json"), options: .atomic)
        } catch {
            throw ModelError("cannot write \(directory.path)/adapter_config.json: \(error.localizedDescription)")
        }
        var tensors: [(String, Tensor)] = []
        for (name, pair) in pairs {
            tensors.append((Self.peftPrefix + name + ".lora_A.weight", pair.a))
            tensors.append((Self.peftPrefix + name + ".lora_B.weight", pair.b))
        }
        try SafetensorsWriter.write(tensors, to: directory.appendingPathComponent("adapter_model.safetensors").path)
    }
}
