import Foundation
import RefineryCore
import RefineryModel
import RefineryTensor
import RefineryText

/// What a worker needs to build the same gradient engine as the coordinator (`Welcome.training`).
public struct TrainingWireSettings: Sendable, Equatable {
    public var method: TrainingMethod
    public var lora: LoRAConfig
    public var gradientCheckpointing: Bool
    /// OpenBLAS threads every worker computes gradients with: the coordinator's own count, so that
    /// a run's bits do not depend on which machines (with how many cores) did the work.
    public var blasThreads: Int
    /// The precision of the products (the coordinator's resolved `--dtype`).
    public var dtype: ComputeDType
    /// The longest sequence or packed row (`--max-length`), for the workers' memory plans.
    public var maxLength: Int

    public init(method: TrainingMethod, lora: LoRAConfig, gradientCheckpointing: Bool, blasThreads: Int, dtype: ComputeDType = .float32,
                maxLength: Int = 2048) {
        self.method = method
        self.lora = lora
        self.gradientCheckpointing = gradientCheckpointing
        self.blasThreads = blasThreads
        self.dtype = dtype
        self.maxLength = maxLength
    }

    /// The training options a worker's memory plan needs (the rest does not change the peak).
    public var plannedOptions: TrainingOptions {
        var options = TrainingOptions()
        options.method = method
        options.lora = lora
        options.gradientCheckpointing = gradientCheckpointing
        options.dtype = .fixed(dtype)
        options.maxLength = maxLength
        return options
    }

    /// The wire form (`Welcome.training`).
    public var message: Refinery_Cluster_TrainingSettings {
        var m = Refinery_Cluster_TrainingSettings()
        switch method {
        case .lora: m.method = .lora
        case .full: m.method = .full
        case .qlora: m.method = .qlora
        }
        m.loraR = UInt32(clamping: lora.rank)
        m.loraAlpha = lora.alpha
        m.loraDropout = lora.dropout
        m.useRslora = lora.useRSLoRA
        switch lora.targets {
        case .allLinear: m.allLinear = true
        case let .names(names):
            var list = Refinery_Cluster_TrainingSettings.ModuleNames()
            list.names = names
            m.names = list
        case let .regex(pattern): m.regex = pattern
        }
        m.gradientCheckpointing = gradientCheckpointing
        m.blasThreads = UInt32(clamping: blasThreads)
        m.precision = dtype == .bfloat16 ? .bfloat16 : .float32
        m.maxLength = UInt32(clamping: maxLength)
        return m
    }

    /// Reads and checks the wire form.
    public init(message m: Refinery_Cluster_TrainingSettings) throws(WireRefusal) {
        func check(_ condition: Bool, _ what: String) throws(WireRefusal) { if !condition { throw WireRefusal("training settings: \(what)") } }
        let method: TrainingMethod
        switch m.method {
        case .lora: method = .lora
        case .full: method = .full
        case .qlora: method = .qlora
        case .UNRECOGNIZED(let value): throw WireRefusal("training settings: unknown method \(value)")
        }
        try check((1...65_536).contains(m.loraR), "lora_r \(m.loraR) is out of range")
        try check(m.loraAlpha.isFinite && m.loraAlpha > 0, "lora_alpha \(m.loraAlpha) is out of range")
        try check(m.loraDropout.isFinite && m.loraDropout >= 0 && m.loraDropout < 1, "lora_dropout \(m.loraDropout) is out of range")
        try check((1...1024).contains(m.blasThreads), "blas_threads \(m.blasThreads) is out of range")
        try check(m.maxLength <= 1 << 20, "max_length \(m.maxLength) is out of range")
        let dtype: ComputeDType
        switch m.precision {
        case .float32: dtype = .float32
        case .bfloat16: dtype = .bfloat16
        case .UNRECOGNIZED(let value): throw WireRefusal("training settings: unknown precision \(value)")
        }
        let targets: LoRATargets
        switch m.targets {
        case .allLinear?, nil: targets = .allLinear
        case let .names(list)?:
            try check(!list.names.isEmpty && list.names.count <= 1024 && list.names.allSatisfy { !$0.isEmpty && $0.utf8.count <= 256 }, "target module names are empty or too long")
            targets = .names(list.names)
        case let .regex(pattern)?:
            try check(!pattern.isEmpty && pattern.utf8.count <= 4096, "the target pattern is empty or too long")
            targets = .regex(pattern)
        }
        self.init(method: method,
                  lora: LoRAConfig(rank: Int(m.loraR), alpha: m.loraAlpha, dropout: m.loraDropout, useRSLoRA: m.useRslora, targets: targets),
                  gradientCheckpointing: m.gradientCheckpointing, blasThreads: Int(m.blasThreads), dtype: dtype,
                  maxLength: m.maxLength == 0 ? 2048 : Int(m.maxLength))
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
