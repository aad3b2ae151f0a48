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
            // The last step's checkpoint is an event with its fields.
            #expect(events.contains { $0["event"]?.stringValue == "checkpoint_written" && $0["step"]?.stringValue == "3" }, "\(train.stderr)")

            let articles = dir.appendingPathComponent("articles.json")
            try ClusterTests.writeArticles(articles, count: 20)
            // Some requests fail (server errors, broken replies) and are retried.
            let mock = try ClusterTests.Mock(latencyMs: 5, extra: ["--rate-500", "0.15", "--rate-malformed", "0.15", "--seed", "7"])
            let config = try ClusterTests.config(dir: dir, name: "j", articles: articles, mock: mock, train: true, steps: 2)
            let run = try CommandLineTests.run(["run", "--config", config.path, "--workers", "2", "--log-format", "json", "--dashboard", "off"])
            #expect(run.status == 0, "\(run.stderr)")
            let runEvents = Self.objects(run.stderr, "run")
            let sources = Set(runEvents.compactMap { $0["source"]?.stringValue })
            #expect(sources.isSuperset(of: ["cluster", "worker", "generate", "train"]), "\(sources)")
            // Events that matter carry their facts as fields.
            let joined = runEvents.filter { $0["event"]?.stringValue == "worker_joined" }
            #expect(joined.count == 2 && joined.allSatisfy { $0["worker"]?.stringValue != nil && $0["slots"]?.stringValue != nil }, "\(joined)")
            let failed = runEvents.filter { $0["event"]?.stringValue == "request_failed" }
            #expect(!failed.isEmpty && failed.allSatisfy {
                $0["level"]?.stringValue == "warning" && $0["chunk"]?.stringValue != nil && !($0["reason"]?.stringValue ?? "").isEmpty
                    && ["server_error", "invalid_reply", "malformed_response"].contains($0["error_class"]?.stringValue ?? "")
            }, "\(failed.prefix(3))")
            let finishedStages = Set(runEvents.compactMap { $0["event"]?.stringValue == "stage_finished" ? $0["stage"]?.stringValue : nil })
            #expect(finishedStages.isSuperset(of: ["generate", "train"]), "\(finishedStages)")
            #expect(runEvents.contains { $0["event"]?.stringValue == "checkpoint_written" })
            // The state counts the same failures by class.
            let status = try JSONValue.parse(try CommandLineTests.run(["status", "--state", dir.appendingPathComponent("j.db").path, "--json"]).stdout)
            let byClass = status["errors_by_class"]?.objectValue ?? []
            #expect(byClass.map { $0.1.intValue ?? 0 }.reduce(0, +) == status["requests_by_outcome"]?["failed"]?.intValue, "\(byClass)")
            #expect(byClass.map { $0.1.intValue ?? 0 }.reduce(0, +) == failed.count, "one event per failed request")

            // The error that ends a command is a JSON line too.
            let missing = try CommandLineTests.run(["train", "--model", TrainCommandTests.llama, "--data", dir.appendingPathComponent("none.jsonl").path,
                                                    "--output", dir.appendingPathComponent("c").path, "--log-format", "json"])
            let last = Self.objects(missing.stderr, "failed train").last
            #expect(missing.status == 1 && last?["level"]?.stringValue == "error" && last?["event"]?.stringValue == "error"
                        && (last?["message"]?.stringValue ?? "").contains("none.jsonl"), "\(missing.stderr)")

            let bad = try CommandLineTests.run(["train", "--model", TrainCommandTests.llama, "--data", TrainCommandTests.trainData,
                                                "--output", dir.appendingPathComponent("b").path, "--log-format", "xml"])
            #expect(bad.status != 0 && bad.stderr.contains("--log-format xml"), "\(bad.stderr)")
        }
    }
}
