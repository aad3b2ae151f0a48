import Foundation
import RefineryCore
import RefineryTensor

extension GGUFExport {
    /// llama.cpp's name of each projection.
    static func ggufName(_ slot: LinearSlot) -> String {
        switch slot {
        case .q: return "attn_q"
        case .k: return "attn_k"
        case .v: return "attn_v"
        case .o: return "attn_output"
        case .gate: return "ffn_gate"
        case .up: return "ffn_up"
        case .down: return "ffn_down"
        }
    }

    /// A LoRA adapter as a GGUF LoRA file llama.cpp applies over the base model's GGUF
    /// (`--lora`): `general.type` adapter, `adapter.type` lora, `adapter.lora.alpha` chosen so that
    /// llama.cpp's alpha / rank equals the adapter's scaling (rsLoRA included), and per projection
    /// `…weight.lora_a` `[r, in]` and `…weight.lora_b` `[out, r]` in f32 — B's rows permuted like
    /// the base's query and key rows for the llama architecture.
    public static func writeAdapter(_ adapter: LoRAAdapter, model config: ModelConfig, to path: String, name: String) throws {
        let architecture: String
        switch config.modelType {
        case "llama", "mistral": architecture = "llama"
        case "qwen2": architecture = "qwen2"
        default: throw ModelError("GGUF export supports llama, mistral and qwen2 models, not \(config.modelType)")
        }
        let rank = adapter.config.rank
        let metadata: [(String, GGUFValue)] = [
            ("general.architecture", .string(architecture)), ("general.type", .string("adapter")), ("general.name", .string(name)),
            ("adapter.type", .string("lora")), ("adapter.lora.alpha", .float32(adapter.config.scaling * Float(rank))),
        ]
        var tensors: [GGUFWriter.TensorEntry] = []
        for layer in 0..<config.layerCount {
            for slot in LinearSlot.allCases {
                guard let pair = adapter.pair(layer: layer, slot: slot) else { continue }
                let base = "blk.\(layer).\(ggufName(slot)).weight"
                let heads: Int? = architecture == "llama" ? (slot == .q ? config.headCount : slot == .k ? config.kvHeadCount : nil) : nil
                let a = pair.a, b = pair.b
                tensors.append(.init(name: base + ".lora_a", shape: a.shape, type: .f32) {
                    GGMLEncoding.encode(UnsafeBufferPointer(start: a.pointer, count: a.shape.reduce(1, *)), as: .f32)
                })
                tensors.append(.init(name: base + ".lora_b", shape: b.shape, type: .f32) {
                    var values = Array(UnsafeBufferPointer(start: b.pointer, count: b.shape.reduce(1, *)))
                    if let heads { values = permuteForRotary(values, rows: b.shape[0], columns: b.shape[1], heads: heads) }
                    return values.withUnsafeBufferPointer { GGMLEncoding.encode($0, as: .f32) }
                })
            }
        }
        guard !tensors.isEmpty else { throw ModelError("the adapter adapts no projection llama.cpp knows") }
        try GGUFWriter.write(metadata: metadata, tensors: tensors, to: path)
    }
}
