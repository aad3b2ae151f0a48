import Foundation
import Testing

/// Output redirected to a file or pipe (as these tests capture it) holds plain lines: no carriage
/// returns, none longer than 300 characters — for `train`, `data generate` and `run`, with paths
/// long enough that the "wrote …" lines would pass 300 unwrapped.
@Suite struct RedirectedOutputTests {
    static func check(_ result: CommandLineTests.Result, _ command: String) {
        #expect(result.status == 0, "\(command): \(result.stderr)")
        for (name, text) in [("stdout", result.stdout), ("stderr", result.stderr)] {
            #expect(!text.contains("\r"), "\(command) \(name) holds a carriage return")
            let longest = text.split(separator: "\n").map(\.count).max() ?? 0
            #expect(longest <= 300, "\(command) \(name): a line of \(longest) characters")
        }
    }

    @Test func trainDataGenerateAndRunWritePlainShortLines() async throws {
        try await offThePool {
            var dir = try TrainCommandTests.temporary()
            for part in 0..<2 { dir = dir.appendingPathComponent("a-rather-long-folder-name-for-outputs-\(part)-" + String(repeating: "x", count: 60)) }
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)

            let train = try CommandLineTests.run(["train", "--model", TrainCommandTests.llama, "--data", TrainCommandTests.trainData,
                                                  "--output", dir.appendingPathComponent("adapter").path, "--steps", "12", "--lora-r", "4",
                                                  "--eval-split", "0.2", "--eval-every", "4"])
            Self.check(train, "train")
            #expect(train.stdout.contains("wrote") && train.stdout.contains("\n  "), "the wrote line wraps: \(train.stdout)")
            // Every step that evaluated is its own line; the last step's line is there.
            #expect(train.stderr.contains("step 12/12"), "\(train.stderr)")

            let articles = dir.appendingPathComponent("articles.json")
            try ClusterTests.writeArticles(articles, count: 20)
            let mock = try ClusterTests.Mock(latencyMs: 5)
            let generate = try CommandLineTests.run(["data", "generate", "--articles", articles.path, "--state", dir.appendingPathComponent("g.db").path,
                                                     "--out", dir.appendingPathComponent("g.jsonl").path, "--base-url", mock.base,
                                                     "--model", "mock-model"])
            Self.check(generate, "data generate")
            #expect(generate.stderr.contains("[generate]"), "\(generate.stderr)")

            let config = try ClusterTests.config(dir: dir, name: "r", articles: articles, mock: mock, train: true, steps: 4)
            let run = try CommandLineTests.run(["run", "--config", config.path, "--workers", "2"])
            Self.check(run, "run")
            // Per-step timings go to a file next to the adapter, not into the log as one long line
            // (a log wraps it mid-number at 300 characters).
            #expect(!run.stderr.contains("step_seconds"), "\(run.stderr)")
            let timing = try JSONSerialization.jsonObject(with: Data(contentsOf: dir.appendingPathComponent("r-adapter/step_timing.json"))) as? [String: [Double]]
            #expect(timing?["step_seconds"]?.count == 4 && timing?["critical_compute_seconds"]?.count == 4, "\(String(describing: timing))")
        }
    }
}
