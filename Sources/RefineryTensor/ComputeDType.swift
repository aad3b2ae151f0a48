/// The precision the matrix products of a model run in.
///
/// In `bfloat16` the frozen weights are held in bfloat16 (half the memory of float32) and the
/// products read bfloat16 operands and accumulate in float32; trained tensors (LoRA weights,
/// full-fine-tuning master weights), gradients, optimizer moments, norms, softmax, rotary
/// embeddings and the loss stay float32 — what PyTorch's CPU autocast does with float32 parameters.
public enum ComputeDType: String, Sendable, CaseIterable {
    case float32
    case bfloat16

    /// Parses a user's spelling (`float32`/`fp32`/`f32`, `bfloat16`/`bf16`), or nil.
    public init?(spelling: String) {
        switch spelling.lowercased() {
        case "float32", "fp32", "f32", "float": self = .float32
        case "bfloat16", "bf16": self = .bfloat16
        default: return nil
        }
    }
}
