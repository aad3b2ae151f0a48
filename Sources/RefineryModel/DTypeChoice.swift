import Foundation
import RefineryTensor

/// What a user asks for with `--dtype`: a precision, or `auto` to follow the checkpoint.
public enum DTypeChoice: Sendable, Equatable {
    case auto
    case fixed(ComputeDType)

    public static let float32 = DTypeChoice.fixed(.float32)
    public static let bfloat16 = DTypeChoice.fixed(.bfloat16)

    /// The accepted spellings, for messages.
    public static let spellings = "auto, float32 (fp32) or bfloat16 (bf16)"

    /// Parses `auto`, `float32`/`fp32`, `bfloat16`/`bf16`; throws a message naming `source`
    /// (a flag or a config key) and the accepted values.
    public init(parsing text: String, source: String) throws {
        if text.lowercased() == "auto" {
            self = .auto
        } else if let dtype = ComputeDType(spelling: text) {
            self = .fixed(dtype)
        } else {
            throw ModelError("\(source) \(text) is not a dtype; use \(Self.spellings)")
        }
    }

    /// The precision to run: a fixed choice as it is; `auto` as transformers loads the checkpoint
    /// with `dtype="auto"`: `dtype` in config.json (transformers ≥ 4.56), else `torch_dtype`, else
    /// the tensors' own dtype. bfloat16 checkpoints run in bfloat16; float32 and float16 ones in
    /// float32 (Refinery has no float16 products, and bfloat16 would lose float16's mantissa bits).
    public func resolve(config: ModelConfig, checkpoint: Checkpoint) -> ComputeDType {
        switch self {
        case .fixed(let dtype): return dtype
        case .auto:
            if let stored = config.storedDType { return stored == "bfloat16" ? .bfloat16 : .float32 }
            return checkpoint.storedDType == .bf16 ? .bfloat16 : .float32
        }
    }
}
