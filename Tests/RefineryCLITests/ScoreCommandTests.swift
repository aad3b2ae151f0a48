import Foundation
import GRDB
import RefineryCore
import RefineryModel
import Testing

/// `refinery data score` with the BERT classifier fixtures.
@Suite struct ScoreCommandTests {
    @Test func scoreStageKeepsTheTopFractionAndSaysWhy() async throws {
        try await offThePool {
            let dir = try TrainCommandTests.temporary()
            defer { try? FileManager.default.removeItem(at: dir) }
            let input = dir.appendingPathComponent("in.jsonl"), output = dir.appendingPathComponent("out.jsonl")
            let state = dir.appendingPathComponent("state.sqlite"), config = dir.appendingPathComponent("run.yaml")
            let rows = EmbedCommandTests.samples(8)
            try EmbedCommandTests.write(rows, to: input)
            let regression = TrainCommandTests.fixtures.appendingPathComponent("bert-classifier-regression")
            try "curate:\n  - score: {model: \(regression.path), dtype: float32, field: output, top_fraction: 0.5}\n"
                .write(to: config, atomically: true, encoding: .utf8)
            let result = try CommandLineTests.run(["data", "curate", "--config", config.path, "--input", input.path, "--output", output.path,
                                                   "--state", state.path])
            #expect(result.status == 0, "\(result.stderr)")
            let kept = try String(contentsOf: output, encoding: .utf8).split(separator: "\n").map(String.init)
            let scores = try BertSequenceClassifier(directory: regression, dtype: .float32)
                .logits(rows.map { (try? JSONValue.parse($0))?["output"]?.stringValue ?? "" }).map { $0[0] }
            let best = Set(scores.indices.sorted { scores[$0] > scores[$1] }.prefix(4))
            #expect(kept == rows.indices.filter { best.contains($0) }.map { rows[$0] }, "the four best, in input order")
            let stored = try DatabaseQueue(path: state.path).read { db in
                try Row.fetchAll(db, sql: "SELECT sample, kept, score, reason FROM curation_decision ORDER BY rowid")
            }
            #expect(stored.count == 8 && stored.allSatisfy { ($0["score"] as Double?) != nil }, "every sample's score is stored")
            let dropped = try #require(stored.first { ($0["kept"] as Bool?) == false })
            let why = try CommandLineTests.run(["data", "why", "--state", state.path, dropped["sample"] as String])
            #expect(why.status == 0 && why.stdout.contains("outside the top 50%"), "\(why.stdout) \(why.stderr)")
        }
    }

    /// A reward model scores a sample longer than its trained context whole (as transformers
    /// does), and says so, naming the longest such sample.
    @Test func samplesPastTheRewardModelsContextAreScoredAndWarnedOf() async throws {
        try await offThePool {
            let dir = try TrainCommandTests.temporary()
            defer { try? FileManager.default.removeItem(at: dir) }
            let input = dir.appendingPathComponent("in.jsonl"), output = dir.appendingPathComponent("out.jsonl")
            let long = (0..<300).map { "word\($0)" }.joined(separator: " ")
            let rows = ["Name a colour.", "Summarize: " + long, "Count to three."].map { instruction in
                JSONValue.object([("instruction", .string(instruction)), ("output", .string("An answer."))]).compactText
            }
            try EmbedCommandTests.write(rows, to: input)
            let reward = TrainCommandTests.fixtures.appendingPathComponent("llama-reward")
            let result = try CommandLineTests.run(["data", "score", "--model", reward.path, "--input", input.path, "--output", output.path])
            #expect(result.status == 0, "\(result.stderr)")
            #expect(result.stderr.contains("warning: 1 of 3 samples are longer than the model's 256 positions")
                    && result.stderr.contains("\(input.path):2, has "), "\(result.stderr)")
            #expect(try String(contentsOf: output, encoding: .utf8).split(separator: "\n").count == 3, "every sample is scored")
            try EmbedCommandTests.write([rows[0], rows[2]], to: input)
            let short = try CommandLineTests.run(["data", "score", "--model", reward.path, "--input", input.path, "--output", output.path])
            #expect(short.status == 0 && !short.stderr.contains("warning"), "short samples, no note: \(short.stderr)")
        }
    }

    @Test func scoresAreTheClassifiersLogits() async throws {
        try await offThePool {
            let dir = try TrainCommandTests.temporary()
            defer { try? FileManager.default.removeItem(at: dir) }
            let input = dir.appendingPathComponent("in.jsonl"), output = dir.appendingPathComponent("out.jsonl")
            let rows = EmbedCommandTests.samples(6)
            try EmbedCommandTests.write(rows, to: input)
            let regression = TrainCommandTests.fixtures.appendingPathComponent("bert-classifier-regression")
            let result = try CommandLineTests.run(["data", "score", "--model", regression.path, "--input", input.path, "--output", output.path,
                                                   "--dtype", "float32", "--field", "output"])
            #expect(result.status == 0, "\(result.stderr)")
            let scored = try String(contentsOf: output, encoding: .utf8).split(separator: "\n").map { try JSONValue.parse(String($0)) }
            let want = try BertSequenceClassifier(directory: regression, dtype: .float32)
                .logits(rows.map { (try? JSONValue.parse($0))?["output"]?.stringValue ?? "" })
            #expect(scored.count == 6)
            for (row, logits) in zip(scored, want) {
                let score = try #require(row["score"]?.doubleValue)
                #expect(abs(score - Double(logits[0])) < 1e-5)
                #expect(row["instruction"] != nil, "input fields kept")
            }
            // --dtype int8: the classifier with its layer products dynamically quantized.
            let quantized = try CommandLineTests.run(["data", "score", "--model", regression.path, "--input", input.path, "--output", output.path,
                                                      "--dtype", "int8", "--field", "output"])
            #expect(quantized.status == 0, "\(quantized.stderr)")
            let int8Scores = try String(contentsOf: output, encoding: .utf8).split(separator: "\n").map { try JSONValue.parse(String($0))["score"]?.doubleValue }
            let int8Want = try BertSequenceClassifier(directory: regression, dtype: .float32, int8Products: true)
                .logits(rows.map { (try? JSONValue.parse($0))?["output"]?.stringValue ?? "" })
            #expect(int8Scores == int8Want.map { Double($0[0]) }, "the scores of the int8 classifier, written exactly")
            let badPrecision = try CommandLineTests.run(["data", "score", "--model", regression.path, "--input", input.path, "--output", output.path,
                                                         "--dtype", "int4"])
            #expect(badPrecision.status != 0 && badPrecision.stderr.contains("--dtype int4 is not a precision"), "\(badPrecision.stderr)")
            let classes = TrainCommandTests.fixtures.appendingPathComponent("bert-classifier-classes")
            let multi = try CommandLineTests.run(["data", "score", "--model", classes.path, "--input", input.path, "--output", output.path])
            #expect(multi.status == 0, "\(multi.stderr)")
            let first = try JSONValue.parse(String(try String(contentsOf: output, encoding: .utf8).split(separator: "\n")[0]))
            #expect(first["score"]?.objectValue?.map(\.0) == ["low", "medium", "high"])

            // A Llama-family reward model scores each conversation through its chat template.
            let reward = TrainCommandTests.fixtures.appendingPathComponent("llama-reward")
            let conversations = [#"{"messages": [{"role": "user", "content": "What is LoRA?"}, {"role": "assistant", "content": "LoRA adds small low-rank matrices to frozen weights."}]}"#,
                                 #"{"instruction": "Name a prime number.", "output": "Seven."}"#]
            try EmbedCommandTests.write(conversations, to: input)
            let rewarded = try CommandLineTests.run(["data", "score", "--model", reward.path, "--input", input.path, "--output", output.path,
                                                     "--dtype", "float32"])
            #expect(rewarded.status == 0, "\(rewarded.stderr)")
            let scores = try String(contentsOf: output, encoding: .utf8).split(separator: "\n").map { try JSONValue.parse(String($0))["score"] }
            let expected = try JSONValue.parse(bytes: Array(try Data(contentsOf: reward.appendingPathComponent("expected.json"))))["logits"]
            for (index, score) in scores.enumerated() {
                let want = try #require(expected?.arrayValue?[index].arrayValue?.first?.doubleValue)
                #expect(abs((score?["helpfulness"]?.doubleValue ?? .infinity) - want) < 1e-4, "conversation \(index): \(score?.compactText ?? "none")")
            }
            let withField = try CommandLineTests.run(["data", "score", "--model", reward.path, "--input", input.path, "--output", output.path,
                                                      "--field", "output"])
            #expect(withField.status != 0 && withField.stderr.contains("applies to BERT-family"), "\(withField.stderr)")
            let int8Reward = try CommandLineTests.run(["data", "score", "--model", reward.path, "--input", input.path, "--output", output.path,
                                                       "--dtype", "int8"])
            #expect(int8Reward.status != 0 && int8Reward.stderr.contains("int8 products are for BERT-family classifiers"), "\(int8Reward.stderr)")
            try EmbedCommandTests.write(rows, to: input)

            let noHead = try CommandLineTests.run(["data", "score", "--model", EmbedCommandTests.minibert.path, "--input", input.path,
                                                   "--output", output.path])
            #expect(noHead.status != 0 && noHead.stderr.contains("not a sequence classifier"), "\(noHead.stderr)")
            let missing = try CommandLineTests.run(["data", "score", "--model", regression.path, "--input", input.path,
                                                    "--output", output.path, "--field", "nope"])
            #expect(missing.status != 0 && missing.stderr.contains("in.jsonl:1"), "\(missing.stderr)")
        }
    }
}
