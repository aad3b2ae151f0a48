import Foundation
import RefineryCore
import RefineryTensor
import Testing
@testable import RefineryModel

/// GGUF export read back by an independent reader written here from the format's description:
/// the header and metadata llama.cpp needs, 32-byte-aligned tensor data, f32 weights equal to the
/// model's (query and key rows in llama.cpp's rotary order), and the block formats decoding to
/// within their step. (`scripts/check_gguf.py` runs llama.cpp itself on these files.)
@Suite struct GGUFExportTests {
    struct Parsed {
        var metadata: [String: Any] = [:]
        var tensors: [String: (shape: [Int], type: UInt32, data: [UInt8])] = [:]
    }

    static func parse(_ bytes: [UInt8]) throws -> Parsed {
        var position = 0
        func read<T: FixedWidthInteger>(_: T.Type) throws -> T {
            guard position + MemoryLayout<T>.size <= bytes.count else { throw ModelError("truncated at \(position)") }
            var value: T = 0
            for i in 0..<MemoryLayout<T>.size { value |= T(bytes[position + i]) << (8 * i) }
            position += MemoryLayout<T>.size
            return value
        }
        func string() throws -> String {
            let count = Int(try read(UInt64.self))
            defer { position += count }
            return String(decoding: bytes[position..<(position + count)], as: UTF8.self)
        }
        func value(_ type: UInt32) throws -> Any {
            switch type {
            case 4: return try read(UInt32.self)
            case 5: return try read(Int32.self)
            case 6: return Float(bitPattern: try read(UInt32.self))
            case 7: return try read(UInt8.self) != 0
            case 8: return try string()
            case 10: return try read(UInt64.self)
            case 9:
                let element = try read(UInt32.self), count = Int(try read(UInt64.self))
                return try (0..<count).map { _ in try value(element) }
            default: throw ModelError("unexpected value type \(type)")
            }
        }
        guard Array(bytes.prefix(4)) == Array("GGUF".utf8) else { throw ModelError("not GGUF") }
        position = 4
        #expect(try read(UInt32.self) == 3)
        let tensorCount = Int(try read(UInt64.self)), metadataCount = Int(try read(UInt64.self))
        var parsed = Parsed()
        for _ in 0..<metadataCount {
            let key = try string()
            parsed.metadata[key] = try value(try read(UInt32.self))
        }
        var infos: [(String, [Int], UInt32, Int)] = []
        for _ in 0..<tensorCount {
            let name = try string()
            let dimensions = Int(try read(UInt32.self))
            let shape = try (0..<dimensions).map { _ in Int(try read(UInt64.self)) }.reversed()
            infos.append((name, Array(shape), try read(UInt32.self), Int(try read(UInt64.self))))
        }
        let dataStart = (position + 31) / 32 * 32
        for (index, info) in infos.enumerated() {
            #expect(info.3 % 32 == 0, "\(info.0) aligned")
            let end = index + 1 < infos.count ? infos[index + 1].3 : bytes.count - dataStart
            parsed.tensors[info.0] = (info.1, info.2, Array(bytes[(dataStart + info.3)..<(dataStart + end)]))
        }
        return parsed
    }

    static func floats(_ bytes: [UInt8], count: Int) -> [Float] {
        (0..<count).map { i in Float(bitPattern: UInt32(bytes[4 * i]) | UInt32(bytes[4 * i + 1]) << 8 | UInt32(bytes[4 * i + 2]) << 16 | UInt32(bytes[4 * i + 3]) << 24) }
    }

    /// Q8_0 and Q4_0 blocks back to floats.
    static func dequantize(_ bytes: [UInt8], type: UInt32, count: Int) -> [Float] {
        var values: [Float] = []
        let blockBytes = type == 8 ? 34 : 18
        for block in 0..<(count / 32) {
            let base = block * blockBytes
            let d = Float(Float16(bitPattern: UInt16(bytes[base]) | UInt16(bytes[base + 1]) << 8))
            if type == 8 {
                for j in 0..<32 { values.append(d * Float(Int8(bitPattern: bytes[base + 2 + j]))) }
            } else {
                var block = [Float](repeating: 0, count: 32)
                for j in 0..<16 {
                    block[j] = d * Float(Int(bytes[base + 2 + j] & 0x0F) - 8)
                    block[j + 16] = d * Float(Int(bytes[base + 2 + j] >> 4) - 8)
                }
                values += block
            }
        }
        return values
    }

    @Test(arguments: ModelFixtures.names) func theFileHoldsTheModelUnderLlamaCppsNames(name: String) throws {
        let directory = ModelFixtures.directory(name)
        let model = try LlamaModel(directory: directory, dtype: .float32)
        let config = model.config
        let weights = Dictionary(model.namedWeights(), uniquingKeysWith: { (first: Tensor, _: Tensor) in first })
        let out = try ModelFixtures.temporaryDirectory()
        for quantization in [GGUFExport.Quantization.f32, .q8_0, .q4_0] {
            let path = out.appendingPathComponent("\(name)-\(quantization.rawValue).gguf").path
            try GGUFExport.write(model, directory: directory, to: path, quantization: quantization, name: name)
            let parsed = try Self.parse(Array(try Data(contentsOf: URL(fileURLWithPath: path))))
            let arch = parsed.metadata["general.architecture"] as? String ?? "?"
            #expect(arch == (config.modelType == "qwen2" ? "qwen2" : "llama"))
            #expect(parsed.metadata["\(arch).block_count"] as? UInt32 == UInt32(config.layerCount))
            #expect(parsed.metadata["\(arch).attention.head_count_kv"] as? UInt32 == UInt32(config.kvHeadCount))
            #expect(parsed.metadata["\(arch).context_length"] as? UInt32 == UInt32(config.maxPositionEmbeddings))
            #expect((parsed.metadata["tokenizer.ggml.tokens"] as? [Any])?.count == config.vocabSize)
            #expect(parsed.metadata["tokenizer.chat_template"] is String)
            #expect(parsed.tensors.count == 2 + (config.tieWordEmbeddings ? 0 : 1) + config.layerCount * (9 + (config.qkvBias ? 3 : 0))
                    + (parsed.tensors["rope_freqs.weight"] == nil ? 0 : 1))
            // Query rows of head 0: llama.cpp's order interleaves the two halves of each head.
            let q = try #require(parsed.tensors["blk.0.attn_q.weight"])
            let hf = try #require(weights["model.layers.0.self_attn.q_proj.weight"])
            let count = hf.shape.reduce(1, *), columns = hf.shape[1], half = config.headDim / 2
            let source = Array(UnsafeBufferPointer(start: hf.pointer, count: count))
            let values = quantization == .f32 ? Self.floats(q.data, count: count) : Self.dequantize(q.data, type: q.type, count: count)
            let permuted = arch == "llama"
            var worst: Float = 0, scale: Float = 0
            for row in 0..<hf.shape[0] {
                let head = row / config.headDim, within = row % config.headDim
                let sourceRow = permuted ? head * config.headDim + (within % 2) * half + within / 2 : row
                for c in 0..<columns {
                    worst = max(worst, abs(values[row * columns + c] - source[sourceRow * columns + c]))
                    scale = max(scale, abs(source[sourceRow * columns + c]))
                }
            }
            switch quantization {
            case .f32: #expect(worst == 0, "\(name) f32 exact")
            case .q8_0: #expect(worst <= scale / 127, "\(name) q8_0 within a step: \(worst)")
            default: #expect(worst <= scale / 7, "\(name) q4_0 within a step: \(worst)")
            }
            // Norms stay f32 whatever the type.
            #expect(parsed.tensors["output_norm.weight"]?.type == 0)
        }
    }

    @Test func blockEncodingsFollowGGMLsReferenceQuantizers() {
        var values = (0..<32).map { Float($0 - 16) / 4 }
        values[5] = -6
        let q8 = values.withUnsafeBufferPointer { GGMLEncoding.encode($0, as: .q8_0) }
        #expect(q8.count == 34)
        #expect(Float(Float16(bitPattern: UInt16(q8[0]) | UInt16(q8[1]) << 8)) == Float(Float16(6.0 / 127)))
        #expect(Int8(bitPattern: q8[2 + 5]) == -127 && Int8(bitPattern: q8[2 + 16]) == 0)
        let q4 = values.withUnsafeBufferPointer { GGMLEncoding.encode($0, as: .q4_0) }
        // The largest magnitude (-6) maps to code 0 (-8 × d with d = 6/8).
        #expect(q4.count == 18 && q4[2 + 5] & 0x0F == 0)
        #expect(GGMLEncoding.bfloat16(1.00390625) == 0x3F80 && GGMLEncoding.bfloat16(1.01171875) == 0x3F82)
    }

    @Test func anAdapterFileHoldsAAndPermutedBWithLlamaCppsScale() throws {
        let directory = ModelFixtures.directory("llama-gqa")
        let config = try ModelConfig.load(directory: directory)
        let adapter = try LoRAAdapter.initialize(model: config, config: LoRAConfig(rank: 4, alpha: 8, useRSLoRA: true), seed: 5)
        // B starts at zero; give it values so the permutation shows.
        for pair in adapter.pairs.values {
            for i in 0..<pair.b.shape.reduce(1, *) { pair.b.pointer[i] = Float(i % 97) / 97 - 0.5 }
        }
        let path = try ModelFixtures.temporaryDirectory().appendingPathComponent("adapter.gguf").path
        try GGUFExport.writeAdapter(adapter, model: config, to: path, name: "a")
        let parsed = try Self.parse(Array(try Data(contentsOf: URL(fileURLWithPath: path))))
        #expect(parsed.metadata["general.type"] as? String == "adapter" && parsed.metadata["adapter.type"] as? String == "lora")
        // llama.cpp scales by alpha / rank: the file's alpha makes that the adapter's own scaling (rsLoRA: alpha / √r).
        let alpha = try #require(parsed.metadata["adapter.lora.alpha"] as? Float)
        #expect(abs(alpha / 4 - 8 / Float(4).squareRoot()) < 1e-6)
        #expect(parsed.tensors.count == 2 * config.layerCount * LinearSlot.allCases.count)
        let pair = try #require(adapter.pair(layer: 1, slot: .k))
        let a = try #require(parsed.tensors["blk.1.attn_k.weight.lora_a"]), b = try #require(parsed.tensors["blk.1.attn_k.weight.lora_b"])
        #expect(a.shape == pair.a.shape && b.shape == pair.b.shape)
        #expect(Self.floats(a.data, count: pair.a.shape.reduce(1, *)) == Array(UnsafeBufferPointer(start: pair.a.pointer, count: pair.a.shape.reduce(1, *))))
        let values = Self.floats(b.data, count: pair.b.shape.reduce(1, *)), rank = pair.b.shape[1], half = config.headDim / 2
        for row in 0..<pair.b.shape[0] {
            let head = row / config.headDim, within = row % config.headDim
            let source = head * config.headDim + (within % 2) * half + within / 2
            #expect(Array(values[(row * rank)..<((row + 1) * rank)]) == Array(UnsafeBufferPointer(start: pair.b.pointer + source * rank, count: rank)))
        }
    }

    @Test func tokenizersGetLlamaCppsPreTokenizerAndTokenTypes() throws {
        func metadata(_ name: String) throws -> [(String, GGUFValue)] {
            let directory = ModelFixtures.directory(name)
            let config = try ModelConfig.load(directory: directory)
            return try GGUFExport.tokenizerMetadata(directory: directory, vocabularySize: config.vocabSize, config: config)
        }
        func string(_ entries: [(String, GGUFValue)], _ key: String) -> String? {
            if case let .string(value)? = entries.first(where: { $0.0 == key })?.1 { return value } else { return nil }
        }
        func types(_ entries: [(String, GGUFValue)]) -> [Int32] {
            if case let .array(.int32s(values))? = entries.first(where: { $0.0 == "tokenizer.ggml.token_type" })?.1 { return values } else { return [] }
        }
        let llama = try metadata("llama-gqa"), qwen = try metadata("qwen2-tied"), mistral = try metadata("mistral-sp")
        #expect(string(llama, "tokenizer.ggml.pre") == "llama-bpe" && string(llama, "tokenizer.ggml.model") == "gpt2")
        #expect(string(qwen, "tokenizer.ggml.pre") == "qwen2")
        #expect(string(mistral, "tokenizer.ggml.model") == "llama")
        // SentencePiece byte-fallback pieces are BYTE tokens (6); special tokens CONTROL (3).
        #expect(types(mistral).filter { $0 == 6 }.count == 256 && types(mistral).contains(3), "\(Set(types(mistral)))")
        #expect(!types(llama).contains(6) && types(llama).contains(3))
    }
}
