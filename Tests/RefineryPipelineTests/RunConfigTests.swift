import Foundation
import RefineryModel
import RefineryPipeline
import RefineryCuration
import Testing

/// The typed run config: defaults defined once, flags over the file, unknown keys refused
/// with the key and section named, the curation plan as an ordered list of stages.
@Suite struct RunConfigTests {
    static func write(_ yaml: String) throws -> String {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("refinery-config-\(UUID().uuidString).yaml")
        try yaml.write(to: url, atomically: true, encoding: .utf8)
        return url.path
    }

    static func error(_ body: () throws -> Void) -> String {
        do { try body() } catch { return "\(error)" }
        return ""
    }

    @Test func defaultsComeFromOnePlaceAndFlagsWinOverTheFile() throws {
        let empty = try RunConfig(path: nil)
        #expect(empty.train.options == TrainingOptions())
        #expect(empty.train.options.checkpointEvery == 10 && empty.data.minChars == 1000 && empty.generate.slots == 4)
        let path = try Self.write("""
            train:
              model: m
              lr: 0.001
              lora-r: 8
              packing: true
            generate:
              slots: 2
            """)
        let config = try RunConfig(path: path, overrides: ["train": ["lr": 0.005, "seed": 7], "generate": ["rpm": 60]])
        #expect(config.train.model == "m" && config.train.options.learningRate == 0.005 && config.train.options.seed == 7)
        #expect(config.train.options.lora.rank == 8 && config.train.options.lora.alpha == 16, "alpha defaults to 2·r")
        #expect(config.train.options.packing && config.generate.slots == 2 && config.generate.rpm == 60)
    }

    @Test func unknownKeysAndSectionsAreRefusedByName() throws {
        let typo = try Self.write("train:\n  modle: m\n")
        let message = Self.error { _ = try RunConfig(path: typo) }
        #expect(message.contains("unknown key train.modle") && message.contains(typo), "\(message)")
        let section = try Self.write("trian:\n  model: m\n")
        #expect(Self.error { _ = try RunConfig(path: section) }.contains("unknown section \"trian\""))
        let value = try Self.write("train:\n  lr: fast\n")
        #expect(Self.error { _ = try RunConfig(path: value) }.contains("train.lr must be a number"))
        let stage = try Self.write("curate:\n  - polish: yes\n")
        #expect(Self.error { _ = try RunConfig(path: stage) }.contains("unknown curation stage"))
        let knob = try Self.write("curate:\n  - dedup: {method: minhash, treshold: 0.5}\n")
        #expect(Self.error { _ = try RunConfig(path: knob) }.contains("treshold"))
    }

    @Test func settingsWorkersWouldRefuseAreRefusedWhenTheConfigIsRead() throws {
        for (yaml, expected) in [("generate:\n  temperature: 50\n", "temperature"), ("generate:\n  rpm: -1\n", "generate.rpm"),
                                 ("generate:\n  max_tokens: 0\n", "max_tokens"), ("generate:\n  budget: .nan\n", "generate.budget"),
                                 ("generate:\n  timeout: -3\n", "timeout"), ("train:\n  max_grad_norm: .inf\n", "max_grad_norm")] {
            let message = Self.error { _ = try RunConfig(path: try Self.write(yaml)) }
            #expect(message.contains(expected), "\(yaml): \(message)")
        }
    }

    @Test func curationIsAnOrderedListAndTheOldMappingIsOneDedupStage() throws {
        let list = try RunConfig(path: try Self.write("""
            curate:
              - dedup: exact
              - dedup: {method: minhash, threshold: 0.7, num_perm: 64}
              - dedup: {method: minhash, bands: 14, rows: 8, num_perm: 112, shingle: chars, ngram: 7, keep: longest, verify: false}
              - dedup: {method: exact, ignore_punctuation: true, keep: score, score_field: rating}
            """))
        let stages = list.curate.stages.compactMap { $0 as? DedupStage }
        #expect(stages.map(\.method) == [.exact, .minhash, .minhash, .exact])
        #expect(stages[1].minHash.threshold == 0.7 && stages[1].minHash.permutations == 64 && stages[1].minHash.verify)
        #expect(stages[2].minHash.bands == LSHBands(bands: 14, rows: 8) && stages[2].minHash.shingling == .characters(7)
                && stages[2].keep == .longest && !stages[2].minHash.verify)
        #expect(stages[3].exactNormalization.stripPunctuation && stages[3].keep == .highestScore && stages[3].scoreField == "rating")
        #expect(!stages[0].exactNormalization.stripPunctuation && stages[0].exactNormalization.lowercase)
        let filtered = try RunConfig(path: try Self.write("curate:\n  - filter: {min_answer_chars: 20, language: en, refusals: false}\n  - dedup: exact\n"))
        let filter = try #require(filtered.curate.stages.first as? FilterStage)
        #expect(filter.filter.answerCharacters == 20...Int.max && filter.filter.language == "en" && !filter.filter.dropRefusals)
        #expect(filtered.curate.stages.map(\.name) == ["filter", "dedup"])
        // Files a stage reads are read when it runs: a config naming one that is not there yet still loads
        // (a worker or `train` loading the config never touches them).
        let later = try RunConfig(path: try Self.write("curate:\n  - decontaminate: {eval: [/nonexistent/eval.jsonl]}\n  - mix: {sources: [{path: /nonexistent/general.jsonl, ratio: 0.5}]}\n"))
        #expect(later.curate.stages.map(\.name) == ["decontaminate", "mix"])
        #expect(throws: (any Error).self) { _ = try later.curate.stages[0].settingsText }
        let semantic = try RunConfig(path: try Self.write("""
            curate:
              - dedup: {method: semantic, model: models/minilm, dtype: bf16, threshold: 0.85, clusters: 7, keep: longest, field: instruction}
              - dedup: {method: semantic, base_url: "http://127.0.0.1:8000/v1", embedding_model: emb, api_key_env: KEY, batch_size: 16}
            """))
        let semanticStages = semantic.curate.stages.compactMap { $0 as? DedupStage }
        #expect(semanticStages.map(\.method) == [.semantic, .semantic])
        #expect(semanticStages[0].semantic == SemanticDedupPlan(source: .local(directory: "models/minilm", dtype: "bf16"),
                                                                  settings: SemanticDedupSettings(threshold: 0.85, clusters: 7),
                                                                  text: .field("instruction")))
        #expect(semanticStages[0].keep == .longest)
        #expect(semanticStages[1].semantic?.source == .endpoint(baseURL: "http://127.0.0.1:8000/v1", model: "emb", apiKeyEnvironment: "KEY", batchSize: 16))
        #expect(try semanticStages[0].settingsText.contains("threshold=0.85 clusters=7"))
        let legacy = try RunConfig(path: try Self.write("curate:\n  dedup: minhash\n  threshold: 0.9\n"))
        let only = legacy.curate.stages.compactMap { $0 as? DedupStage }
        #expect(only.count == 1 && only[0].method == .minhash && only[0].minHash.threshold == 0.9)
        for (yaml, expected) in [("- dedup: {method: minhash, bands: 14}", "both bands and rows"),
                                 ("- dedup: {method: minhash, bands: 20, rows: 8}", "at most num_perm"),
                                 ("- dedup: {keep: best}", "first, longest or score"),
                                 ("- dedup: {method: minhash, shingle: sentences}", "words or chars"),
                                 ("- dedup: {method: minhash, threshold: 1.5}", "threshold"),
                                 ("- dedup: {method: minhash, seed: -1}", "seed must be ≥ 0"),
                                 ("- dedup: {method: minhash, bands: 4611686018427387904, rows: 4}", "at most num_perm"),
                                 ("- filter: {exclude_regex: ['(oops']}", "not a valid regular expression"),
                                 ("- filter: {min_answer_chars: 50, max_answer_chars: 10}", "min_answer_chars"),
                                 ("- filter: {max_answer_tokens: 100}", "need a tokenizer"),
                                 ("- filter: {colour: red}", "colour"),
                                 ("- classify: {}", "unknown curation stage"),
                                 ("- dedup: {method: semantic}", "needs the embedding model"),
                                 ("- dedup: {method: semantic, base_url: http://x/v1}", "needs the embedding model"),
                                 ("- dedup: {method: semantic, model: m, threshold: 1.5}", "threshold must be in (0, 1]"),
                                 ("- dedup: {method: semantic, model: m, clusters: 0}", "clusters must be"),
                                 ("- dedup: {method: semantic, model: m, dtype: fp8}", "not a dtype"),
                                 ("- dedup: {method: semantic, model: m, colour: red}", "colour"),
                                 ("- score: {min: 0.5}", "needs model"),
                                 ("- score: {model: m, top_fraction: 1.5}", "top_fraction must be in (0, 1]"),
                                 ("- score: {model: m, threshold: 1}", "threshold")] {
            let message = Self.error { _ = try RunConfig(path: try Self.write("curate:\n  " + yaml + "\n")) }
            #expect(message.contains(expected), "\(yaml): \(message)")
        }
    }

    @Test func curationRewritesTheDatasetWithTheRowsKeptInOrder() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("refinery-curate-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let data = dir.appendingPathComponent("d.jsonl").path
        let rows = [#"{"instruction":"What is A?","output":"A is a letter."}"#, #"{"instruction":"what is a?","output":"A  is a letter."}"#,
                    #"{"instruction":"What is B?","output":"B is another."}"#]
        try (rows.joined(separator: "\n") + "\n").write(toFile: data, atomically: true, encoding: .utf8)
        let lines = LinesBox()
        try CurationPlan(stages: [DedupStage(method: .exact)]).run(on: data) { lines.append($0) }
        #expect(try String(contentsOfFile: data, encoding: .utf8) == rows[0] + "\n" + rows[2] + "\n")
        #expect(lines.all.contains { $0.contains("kept 2 of 3") })
    }

    @Test func theExampleConfigReadsWithEverySection() throws {
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("examples/run.yaml").path
        let config = try RunConfig(path: path)
        #expect(config.curate.stages.compactMap { ($0 as? DedupStage)?.method } == [.exact, .minhash])
        #expect(config.train.options.lora.rank == 32 && config.train.options.checkpointEvery == 100 && config.train.options.packing)
        #expect(config.generate.budget == 5.0 && config.data.articles == "examples/articles.json" && config.export.merged != nil)
    }

    @Test func theStepPolicyIsTheSameForEveryDriver() {
        var options = TrainingOptions()
        options.evalEvery = 4
        options.checkpointEvery = 3
        let policy = StepPolicy(options: options, totalSteps: 10, hasEvalSet: true)
        #expect((1...10).filter(policy.evaluates(after:)) == [4, 8, 10])
        #expect((1...10).filter(policy.checkpoints(after:)) == [3, 6, 9, 10])
        #expect(!StepPolicy(options: options, totalSteps: 10, hasEvalSet: false).evaluates(after: 4))
    }
}

/// Progress lines collected from a `ProgressReport`.
final class LinesBox: @unchecked Sendable {
    private let lock = NSLock()
    private var lines: [String] = []
    func append(_ line: String) { lock.lock(); lines.append(line); lock.unlock() }
    var all: [String] { lock.lock(); defer { lock.unlock() }; return lines }
}
