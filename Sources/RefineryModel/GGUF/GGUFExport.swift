import Foundation
import RefineryCore
import RefineryTensor
import RefineryText

/// A Llama-family model as a GGUF file llama.cpp loads: the architecture's metadata (context,
/// sizes, heads, norm epsilon, RoPE base and scaling), the tokenizer (vocabulary, merges, token
/// types, special ids, whether BOS is added, the pre-tokenizer's name) and the chat template,
/// then the weights under llama.cpp's names — query and key rows permuted for llama.cpp's
/// rotary layout (`llama` architecture), norms and biases in f32, matrices in the chosen type.
public enum GGUFExport {
    public enum Quantization: String, Sendable, CaseIterable {
        case f32, f16, bf16, q8_0, q4_0

        var type: GGMLType {
            switch self {
            case .f32: return .f32
            case .f16: return .f16
            case .bf16: return .bf16
            case .q8_0: return .q8_0
            case .q4_0: return .q4_0
            }
        }

        /// `general.file_type` (llama.cpp's `llama_ftype`).
        var fileType: UInt32 {
            switch self {
            case .f32: return 0
            case .f16: return 1
            case .q4_0: return 2
            case .q8_0: return 7
            case .bf16: return 32
            }
        }
    }

    /// Writes `model` (loaded from `directory`, with any adapter merged) to `path`.
    public static func write(_ model: LlamaModel, directory: URL, to path: String, quantization: Quantization, name: String) throws {
        let config = model.config
        let architecture: String
        switch config.modelType {
        case "llama", "mistral": architecture = "llama"
        case "qwen2": architecture = "qwen2"
        default: throw ModelError("GGUF export supports llama, mistral and qwen2 models, not \(config.modelType)")
        }
        let a = architecture
        var metadata: [(String, GGUFValue)] = [
            ("general.architecture", .string(a)), ("general.name", .string(name)), ("general.file_type", .uint32(quantization.fileType)),
            ("general.quantization_version", .uint32(2)),
            ("\(a).context_length", .uint32(UInt32(config.maxPositionEmbeddings))), ("\(a).embedding_length", .uint32(UInt32(config.hiddenSize))),
            ("\(a).block_count", .uint32(UInt32(config.layerCount))), ("\(a).feed_forward_length", .uint32(UInt32(config.intermediateSize))),
            ("\(a).attention.head_count", .uint32(UInt32(config.headCount))), ("\(a).attention.head_count_kv", .uint32(UInt32(config.kvHeadCount))),
            ("\(a).attention.key_length", .uint32(UInt32(config.headDim))), ("\(a).attention.value_length", .uint32(UInt32(config.headDim))),
            ("\(a).rope.dimension_count", .uint32(UInt32(config.headDim))), ("\(a).rope.freq_base", .float32(Float(config.ropeTheta))),
            ("\(a).attention.layer_norm_rms_epsilon", .float32(config.rmsNormEps)), ("\(a).vocab_size", .uint32(UInt32(config.vocabSize))),
        ]
        if case let .linear(factor) = config.ropeScaling {
            metadata += [("\(a).rope.scaling.type", .string("linear")), ("\(a).rope.scaling.factor", .float32(Float(factor)))]
        }
        metadata += try tokenizerMetadata(directory: directory, vocabularySize: config.vocabSize, config: config)

        var tensors: [GGUFWriter.TensorEntry] = []
        let weights = Dictionary(model.namedWeights(), uniquingKeysWith: { (first: Tensor, _: Tensor) in first })
        func add(_ ggufName: String, _ hfName: String, permuteHeads: Int? = nil, matrix: Bool) throws {
            guard let tensor = weights[hfName] else { throw ModelError("the model has no \(hfName) to export") }
            let shape = tensor.shape
            let type = matrix && shape.count == 2 && shape[1] % quantization.type.block.values == 0 ? quantization.type : .f32
            tensors.append(.init(name: ggufName, shape: shape, type: type) {
                var values = Array(UnsafeBufferPointer(start: tensor.pointer, count: shape.reduce(1, *)))
                if let heads = permuteHeads { values = permuteForRotary(values, rows: shape[0], columns: shape.count > 1 ? shape[1] : 1, heads: heads) }
                return values.withUnsafeBufferPointer { GGMLEncoding.encode($0, as: type) }
            })
        }
        let permutes = architecture == "llama"
        try add("token_embd.weight", "model.embed_tokens.weight", matrix: true)
        try add("output_norm.weight", "model.norm.weight", matrix: false)
        if !config.tieWordEmbeddings { try add("output.weight", "lm_head.weight", matrix: true) }
        if case .llama3 = config.ropeScaling {
            let factors = ropeFactors(config)
            tensors.append(.init(name: "rope_freqs.weight", shape: [factors.count], type: .f32) {
                factors.withUnsafeBufferPointer { GGMLEncoding.encode($0, as: .f32) }
            })
        }
        for layer in 0..<config.layerCount {
            let p = "model.layers.\(layer).", b = "blk.\(layer)."
            try add(b + "attn_norm.weight", p + "input_layernorm.weight", matrix: false)
            try add(b + "attn_q.weight", p + "self_attn.q_proj.weight", permuteHeads: permutes ? config.headCount : nil, matrix: true)
            try add(b + "attn_k.weight", p + "self_attn.k_proj.weight", permuteHeads: permutes ? config.kvHeadCount : nil, matrix: true)
            try add(b + "attn_v.weight", p + "self_attn.v_proj.weight", matrix: true)
            try add(b + "attn_output.weight", p + "self_attn.o_proj.weight", matrix: true)
            if config.qkvBias {
                try add(b + "attn_q.bias", p + "self_attn.q_proj.bias", permuteHeads: permutes ? config.headCount : nil, matrix: false)
                try add(b + "attn_k.bias", p + "self_attn.k_proj.bias", permuteHeads: permutes ? config.kvHeadCount : nil, matrix: false)
                try add(b + "attn_v.bias", p + "self_attn.v_proj.bias", matrix: false)
            }
            try add(b + "ffn_norm.weight", p + "post_attention_layernorm.weight", matrix: false)
            try add(b + "ffn_gate.weight", p + "mlp.gate_proj.weight", matrix: true)
            try add(b + "ffn_up.weight", p + "mlp.up_proj.weight", matrix: true)
            try add(b + "ffn_down.weight", p + "mlp.down_proj.weight", matrix: true)
        }
        try GGUFWriter.write(metadata: metadata, tensors: tensors, to: path)
    }

    /// Rows of each head reordered from Hugging Face's rotate-half layout to llama.cpp's
    /// interleaved pairs (convert_hf_to_gguf's `permute`).
    static func permuteForRotary(_ values: [Float], rows: Int, columns: Int, heads: Int) -> [Float] {
        let half = rows / heads / 2
        var result = values
        for head in 0..<heads {
            for i in 0..<half {
                for pair in 0..<2 {
                    let source = head * 2 * half + pair * half + i, destination = head * 2 * half + i * 2 + pair
                    for c in 0..<columns { result[destination * columns + c] = values[source * columns + c] }
                }
            }
        }
        return result
    }

    /// llama3 RoPE scaling as llama.cpp reads it: one factor per frequency (the unscaled inverse
    /// frequency over the scaled one).
    static func ropeFactors(_ config: ModelConfig) -> [Float] {
        var unscaled = config
        unscaled.ropeScaling = .none
        return zip(unscaled.inverseFrequencies, config.inverseFrequencies).map { $0 / $1 }
    }

    /// The tokenizer as llama.cpp reads it, from `tokenizer.json` and `tokenizer_config.json`.
    static func tokenizerMetadata(directory: URL, vocabularySize: Int, config: ModelConfig) throws -> [(String, GGUFValue)] {
        let url = directory.appendingPathComponent("tokenizer.json")
        guard let data = FileManager.default.contents(atPath: url.path) else { throw ModelError("no tokenizer.json in \(directory.path) to export") }
        let json = try JSONValue.parse(bytes: Array(data))
        guard let model = json["model"], let vocab = model["vocab"]?.objectValue else { throw ModelError("\(url.path) has no model.vocab") }
        let kind = model["type"]?.stringValue ?? "BPE"
        guard kind == "BPE" else { throw ModelError("GGUF export writes BPE tokenizers; \(url.path) is \(kind)") }
        var tokens = (0..<vocabularySize).map { "[PAD\($0)]" }
        var types = [Int32](repeating: 5, count: vocabularySize)  // unused until named
        let byteLevel = (json["decoder"]?.compactText ?? "").contains("ByteLevel")
        for (token, id) in vocab {
            guard let id = id.intValue, (0..<vocabularySize).contains(id) else { continue }
            tokens[id] = token
            // Byte-fallback pieces (`<0x41>`) are llama.cpp's BYTE tokens in a SentencePiece-style vocabulary.
            types[id] = !byteLevel && ByteFallbackToken.byte(of: token) != nil ? 6 : 1
        }
        let added = json["added_tokens"]?.arrayValue ?? []
        for token in added {
            guard let id = token["id"]?.intValue, (0..<vocabularySize).contains(id), let content = token["content"]?.stringValue else { continue }
            tokens[id] = content
            types[id] = token["special"]?.boolValue == true ? 3 : 4
        }
        let merges: [String] = (model["merges"]?.arrayValue ?? []).compactMap { merge in
            if let text = merge.stringValue { return text }
            if let pair = merge.arrayValue, pair.count == 2, let left = pair[0].stringValue, let right = pair[1].stringValue { return left + " " + right }
            return nil
        }
        var metadata: [(String, GGUFValue)] = [
            ("tokenizer.ggml.model", .string(byteLevel ? "gpt2" : "llama")),
            ("tokenizer.ggml.pre", .string(preTokenizerName(json))),
            ("tokenizer.ggml.tokens", .array(.strings(tokens))), ("tokenizer.ggml.token_type", .array(.int32s(types))),
            ("tokenizer.ggml.merges", .array(.strings(merges))),
        ]
        let tokenizerConfig = FileManager.default.contents(atPath: directory.appendingPathComponent("tokenizer_config.json").path)
            .flatMap { try? JSONValue.parse(bytes: Array($0)) }
        func id(of key: String) -> Int? {
            let value = tokenizerConfig?[key]
            let content = value?.stringValue ?? value?["content"]?.stringValue
            return content.flatMap { name in added.first { $0["content"]?.stringValue == name }?["id"]?.intValue ?? vocab.first { $0.0 == name }?.1.intValue }
        }
        // Special ids from config.json or the tokenizer files, kept only when they name a token.
        func inVocabulary(_ id: Int?) -> GGUFValue? { id.flatMap { (0..<vocabularySize).contains($0) ? .uint32(UInt32($0)) : nil } }
        if let bos = inVocabulary(config.bosTokenID ?? id(of: "bos_token")) { metadata.append(("tokenizer.ggml.bos_token_id", bos)) }
        if let eos = inVocabulary(config.eosTokenIDs.first ?? id(of: "eos_token")) { metadata.append(("tokenizer.ggml.eos_token_id", eos)) }
        if let pad = inVocabulary(id(of: "pad_token")) { metadata.append(("tokenizer.ggml.padding_token_id", pad)) }
        // BOS is added when the post-processor puts it first (Llama 3), or the config says so.
        let addsBOS = tokenizerConfig?["add_bos_token"]?.boolValue
            ?? ((json["post_processor"]?.compactText ?? "").contains("\"single\"") && (json["post_processor"]?.compactText ?? "").contains("SpecialToken"))
        metadata.append(("tokenizer.ggml.add_bos_token", .bool(addsBOS)))
        metadata.append(("tokenizer.ggml.add_eos_token", .bool(false)))
        let templateFile = directory.appendingPathComponent("chat_template.jinja")
        if let template = (try? String(contentsOf: templateFile, encoding: .utf8)) ?? tokenizerConfig?["chat_template"]?.stringValue {
            metadata.append(("tokenizer.chat_template", .string(template)))
        }
        return metadata
    }

    /// llama.cpp's name for the pre-tokenizer's split pattern: Llama 3's (digits in threes),
    /// Qwen2's (single digits, case-insensitive contractions), SmolLM's (a Digits step), else GPT-2's.
    static func preTokenizerName(_ json: JSONValue) -> String {
        let text = json["pre_tokenizer"]?.compactText ?? ""
        if text.contains("\\\\p{N}{1,3}") { return "llama-bpe" }
        if text.contains("(?i:'s|'t|'re|'ve|'m|'ll|'d)") && text.contains("\\\\p{N}") { return "qwen2" }
        if text.contains("Digits") { return "smollm" }
        return "gpt-2"
    }
}

