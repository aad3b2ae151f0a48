import Foundation
import RefineryCore
import Testing

/// `--log-format json`: every line on standard error is one JSON object (time, level, source,
/// message) — for `train` and for `run`, whose local workers log the same way.
@Suite struct JSONLogTests {
    static func objects(_ stderr: String, _ command: String) -> [JSONValue] {
        stderr.split(separator: "\n").compactMap { line in
            let object = try? JSONValue.parse(String(line))
            #expect(object != nil, "\(command): not a JSON line: \(line)")
            if let object {
                for key in ["time", "level", "source", "message"] { #expect(object[key]?.stringValue != nil, "\(command): \(key) in \(line)") }
            }
            return object
        }
    }

    @Test func trainAndRunLogJSONLines() async throws {
        try await offThePool {
            let dir = try TrainCommandTests.temporary()
            let train = try CommandLineTests.run(["train", "--model", TrainCommandTests.llama, "--data", TrainCommandTests.trainData,
                                                  "--output", dir.appendingPathComponent("a").path, "--steps", "3", "--lora-r", "4",
                                                  "--log-format", "json"])
            #expect(train.status == 0, "\(train.stderr)")
            let events = Self.objects(train.stderr, "train")
            #expect(events.contains { $0["source"]?.stringValue == "train" && ($0["message"]?.stringValue ?? "").contains("step 3/3") }, "\(train.stderr)")

            let articles = dir.appendingPathComponent("articles.json")
            try ClusterTests.writeArticles(articles, count: 20)
            let mock = try ClusterTests.Mock(latencyMs: 5)
            let config = try ClusterTests.config(dir: dir, name: "j", articles: articles, mock: mock, train: true, steps: 2)
            let run = try CommandLineTests.run(["run", "--config", config.path, "--workers", "2", "--log-format", "json", "--dashboard", "off"])
            #expect(run.status == 0, "\(run.stderr)")
            let sources = Set(Self.objects(run.stderr, "run").compactMap { $0["source"]?.stringValue })
            #expect(sources.isSuperset(of: ["cluster", "worker", "generate", "train"]), "\(sources)")

            let bad = try CommandLineTests.run(["train", "--model", TrainCommandTests.llama, "--data", TrainCommandTests.trainData,
                                                "--output", dir.appendingPathComponent("b").path, "--log-format", "xml"])
            #expect(bad.status != 0 && bad.stderr.contains("--log-format xml"), "\(bad.stderr)")
        }
    }
}
