import Foundation
import RefineryCore
import RefineryModel
import RefineryText

/// What a worker needs to build the same gradient engine as the coordinator, as JSON in `Welcome`.
public struct TrainingWireSettings: Sendable, Equatable {
    public var method: TrainingMethod
    public var lora: LoRAConfig
    public var gradientCheckpointing: Bool
    /// OpenBLAS threads every worker computes gradients with: the coordinator's own count, so that
    /// a run's bits do not depend on which machines (with how many cores) did the work.
    public var blasThreads: Int

    public init(method: TrainingMethod, lora: LoRAConfig, gradientCheckpointing: Bool, blasThreads: Int) {
        self.method = method
        self.lora = lora
        self.gradientCheckpointing = gradientCheckpointing
        self.blasThreads = blasThreads
    }

    public var json: String {
        let targets: JSONValue
        switch lora.targets {
        case .allLinear: targets = .string("all-linear")
        case let .names(names): targets = .array(names.map { .string($0) })
        case let .regex(pattern): targets = .object([("regex", .string(pattern))])
        }
        return JSONValue.object([
            ("method", .string(method.rawValue)), ("lora_r", .int(lora.rank)), ("lora_alpha", .double(lora.alpha)),
            ("lora_dropout", .double(lora.dropout)), ("use_rslora", .bool(lora.useRSLoRA)), ("targets", targets),
            ("gradient_checkpointing", .bool(gradientCheckpointing)), ("blas_threads", .int(blasThreads)),
        ]).compactText
    }

    public init(json text: String) throws {
        let value: JSONValue
        do { value = try JSONValue.parse(text) } catch { throw ClusterError("the coordinator sent unreadable training settings: \(error)") }
        guard let methodName = value["method"]?.stringValue, let method = TrainingMethod(rawValue: methodName),
              let rank = value["lora_r"]?.intValue, let alpha = value["lora_alpha"]?.doubleValue,
              let dropout = value["lora_dropout"]?.doubleValue, let targetsValue = value["targets"] else {
            throw ClusterError("the coordinator's training settings are incomplete: \(text)")
        }
        let targets: LoRATargets
        if let list = targetsValue.arrayValue {
            targets = .names(list.compactMap(\.stringValue))
        } else if let pattern = targetsValue["regex"]?.stringValue {
            targets = .regex(pattern)
        } else {
            targets = .allLinear
        }
        self.init(method: method,
                  lora: LoRAConfig(rank: rank, alpha: alpha, dropout: dropout, useRSLoRA: value["use_rslora"]?.boolValue ?? false, targets: targets),
                  gradientCheckpointing: value["gradient_checkpointing"]?.boolValue ?? false,
                  blasThreads: max(1, value["blas_threads"]?.intValue ?? 1))
    }
}

/// A content hash of a model folder's weights and config: workers must hold the same base
/// model as the coordinator before they take gradient tasks.
public enum ModelHash {
    /// FNV-1a (64-bit) over the names and bytes of `config.json` and every `.safetensors` file.
    public static func of(directory: String) throws -> String {
        let fm = FileManager.default
        let names: [String]
        do { names = try fm.contentsOfDirectory(atPath: directory).filter { $0 == "config.json" || $0.hasSuffix(".safetensors") }.sorted() } catch {
            throw ClusterError("cannot read the model folder \(directory): \(error.localizedDescription)")
        }
        guard names.contains("config.json") else { throw ClusterError("\(directory) has no config.json: is it a Hugging Face model folder?") }
        var hasher = StableHasher()
        for name in names {
            hasher.combine(name)
            guard let handle = FileHandle(forReadingAtPath: (directory as NSString).appendingPathComponent(name)) else {
                throw ClusterError("cannot read \(directory)/\(name)")
            }
            defer { try? handle.close() }
            while let data = try handle.read(upToCount: 1 << 22), !data.isEmpty { data.withUnsafeBytes { hasher.combine(bytes: $0) } }
        }
        return hasher.hex
    }
}
