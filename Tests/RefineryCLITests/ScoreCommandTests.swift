import Foundation
import RefineryCore
import RefineryModel
import Testing

/// `refinery data score` with the BERT classifier fixtures.
@Suite struct ScoreCommandTests {
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
            #expect(withField.status != 0 && withField.stderr.contains("--field applies to BERT-family"), "\(withField.stderr)")
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
