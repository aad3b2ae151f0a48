import Foundation
import RefineryCore
import Testing
@testable import RefineryModel

/// Sentence embeddings against sentence-transformers on the `minibert` fixture
/// (scripts/make_embedding_fixtures.py: a random-init BERT saved as a sentence-transformers folder).
@Suite struct SentenceEmbedderParityTests {
    static let folder = ModelFixtures.directory("minibert")

    static func expected() throws -> (sentences: [String], pooled: [String: [[Float]]], tokenIDs: [[Int]]) {
        let json = try ModelFixtures.expected("minibert")
        let sentences = json["sentences"]?.arrayValue?.compactMap(\.stringValue) ?? []
        var pooled: [String: [[Float]]] = [:]
        for (mode, rows) in json["pooling"]?.objectValue ?? [] {
            pooled[mode] = rows.arrayValue?.map { $0.arrayValue?.compactMap { $0.doubleValue.map(Float.init) } ?? [] }
        }
        return (sentences, pooled, json["token_ids"]?.arrayValue?.map(ModelFixtures.ints) ?? [])
    }

    static func cosine(_ a: [Float], _ b: [Float]) -> Double {
        var dot = 0.0, na = 0.0, nb = 0.0
        for (x, y) in zip(a, b) { dot += Double(x * y); na += Double(x * x); nb += Double(y * y) }
        return dot / max((na * nb).squareRoot(), 1e-30)
    }

    static func expectClose(_ got: [[Float]], _ want: [[Float]], cosine minimum: Double, maxDifference: Float? = nil, _ label: String) {
        #expect(got.count == want.count, "\(label): \(got.count) vectors for \(want.count) sentences")
        for (index, (g, w)) in zip(got, want).enumerated() {
            #expect(g.count == w.count, "\(label) sentence \(index): width \(g.count) vs \(w.count)")
            let c = cosine(g, w)
            #expect(c >= minimum, "\(label) sentence \(index): cosine \(c) < \(minimum)")
            let normGot = g.reduce(0) { $0 + Double($1 * $1) }.squareRoot(), normWant = w.reduce(0) { $0 + Double($1 * $1) }.squareRoot()
            #expect(abs(normGot - normWant) <= 2e-3 * max(1, normWant), "\(label) sentence \(index): norm \(normGot) vs \(normWant)")
            if let maxDifference {
                let worst = zip(g, w).map { abs($0 - $1) }.max() ?? 0
                #expect(worst <= maxDifference, "\(label) sentence \(index): largest element difference \(worst)")
            }
        }
    }

    @Test func tokenIDsMatchSentenceTransformers() throws {
        let embedder = try SentenceEmbedder(directory: Self.folder, dtype: .float32)
        let reference = try Self.expected()
        #expect(embedder.maxSequenceLength == 24)
        #expect(reference.tokenIDs.contains { $0.count == 24 }, "the fixture must exercise truncation")
        for (sentence, ids) in zip(reference.sentences, reference.tokenIDs) {
            #expect(embedder.tokenIDs(sentence) == ids, "token ids of \(sentence.debugDescription)")
        }
    }

    @Test func float32MatchesSentenceTransformers() throws {
        let embedder = try SentenceEmbedder(directory: Self.folder, dtype: .float32)
        let reference = try Self.expected()
        let vectors = try embedder.embed(reference.sentences, batchTokens: 40)
        Self.expectClose(vectors, try #require(reference.pooled["mean_normalized"]), cosine: 0.9999, maxDifference: 1e-5, "fp32 mean+normalize")
        // A text's vector does not depend on its batch.
        let alone = try reference.sentences.map { try embedder.embed([$0])[0] }
        for (a, b) in zip(alone, vectors) { #expect(Self.cosine(a, b) >= 0.999999) }
    }

    @Test func bfloat16IsWithinItsTolerance() throws {
        let embedder = try SentenceEmbedder(directory: Self.folder, dtype: .bfloat16)
        #expect(embedder.encoder.dtype == .bfloat16)
        let reference = try Self.expected()
        Self.expectClose(try embedder.embed(reference.sentences), try #require(reference.pooled["mean_normalized"]),
                         cosine: 0.999, "bf16 mean+normalize")
    }

    /// A copy of the fixture in the older sentence-transformers layout (all-MiniLM-L6-v2's):
    /// boolean pooling flags, `max_seq_length` in sentence_bert_config.json, the old module type names.
    static func oldStyleCopy(pooling flag: String, normalize: Bool) throws -> URL {
        let fm = FileManager.default
        let copy = try ModelFixtures.temporaryDirectory()
        for name in ["config.json", "model.safetensors", "tokenizer.json"] {
            try fm.copyItem(at: folder.appendingPathComponent(name), to: copy.appendingPathComponent(name))
        }
        try #"{"do_lower_case": true, "model_max_length": 512}"#.write(to: copy.appendingPathComponent("tokenizer_config.json"), atomically: true, encoding: .utf8)
        try #"{"max_seq_length": 24, "do_lower_case": false}"#.write(to: copy.appendingPathComponent("sentence_bert_config.json"), atomically: true, encoding: .utf8)
        try fm.createDirectory(at: copy.appendingPathComponent("1_Pooling"), withIntermediateDirectories: true)
        let flags = ["pooling_mode_cls_token", "pooling_mode_mean_tokens", "pooling_mode_max_tokens", "pooling_mode_mean_sqrt_len_tokens"]
        let pooling = "{\"word_embedding_dimension\": 32, " + flags.map { "\"\($0)\": \($0 == flag)" }.joined(separator: ", ") + "}"
        try pooling.write(to: copy.appendingPathComponent("1_Pooling/config.json"), atomically: true, encoding: .utf8)
        var modules = [#"{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}"#,
                       #"{"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}"#]
        if normalize { modules.append(#"{"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}"#) }
        try ("[" + modules.joined(separator: ",") + "]").write(to: copy.appendingPathComponent("modules.json"), atomically: true, encoding: .utf8)
        return copy
    }

    @Test(arguments: [("pooling_mode_mean_tokens", "mean_normalized", true), ("pooling_mode_cls_token", "cls", false),
                      ("pooling_mode_max_tokens", "max", false), ("pooling_mode_mean_sqrt_len_tokens", "mean_sqrt_len_tokens", false)])
    func olderFolderLayoutAndEveryPooling(flag: String, expectedKey: String, normalize: Bool) throws {
        let copy = try Self.oldStyleCopy(pooling: flag, normalize: normalize)
        defer { try? FileManager.default.removeItem(at: copy) }
        let embedder = try SentenceEmbedder(directory: copy, dtype: .float32)
        #expect(embedder.maxSequenceLength == 24)
        #expect(embedder.layout.normalize == normalize)
        let reference = try Self.expected()
        Self.expectClose(try embedder.embed(reference.sentences), try #require(reference.pooled[expectedKey]),
                         cosine: 0.9999, "old layout, \(expectedKey)")
    }

    @Test func unusableFoldersAreRefusedWithTheReason() throws {
        let missing = FileManager.default.temporaryDirectory.appendingPathComponent("refinery-no-such-model-\(UUID().uuidString)")
        #expect { try SentenceEmbedder(directory: missing) } throws: { "\($0)".contains("does not exist") }

        let dense = try Self.oldStyleCopy(pooling: "pooling_mode_mean_tokens", normalize: false)
        defer { try? FileManager.default.removeItem(at: dense) }
        try #"[{"idx": 0, "path": "", "type": "sentence_transformers.models.Transformer"}, {"idx": 1, "path": "2_Dense", "type": "sentence_transformers.models.Dense"}]"#
            .write(to: dense.appendingPathComponent("modules.json"), atomically: true, encoding: .utf8)
        #expect { try SentenceEmbedder(directory: dense) } throws: { "\($0)".contains("Dense") }

        let twoPoolings = try Self.oldStyleCopy(pooling: "pooling_mode_mean_tokens", normalize: false)
        defer { try? FileManager.default.removeItem(at: twoPoolings) }
        try #"{"pooling_mode_cls_token": true, "pooling_mode_mean_tokens": true}"#
            .write(to: twoPoolings.appendingPathComponent("1_Pooling/config.json"), atomically: true, encoding: .utf8)
        #expect { try SentenceEmbedder(directory: twoPoolings) } throws: { "\($0)".contains("one way at a time") }

        let llama = try Self.oldStyleCopy(pooling: "pooling_mode_mean_tokens", normalize: false)
        defer { try? FileManager.default.removeItem(at: llama) }
        try FileManager.default.removeItem(at: llama.appendingPathComponent("config.json"))
        try FileManager.default.copyItem(at: ModelFixtures.directory("llama-gqa").appendingPathComponent("config.json"),
                                         to: llama.appendingPathComponent("config.json"))
        #expect { try SentenceEmbedder(directory: llama) } throws: { "\($0)".contains("not a supported encoder") }
    }
}
