import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import RefineryCore
import RefineryLLM
import RefineryStore
import RefineryText
import Testing

/// `refinery data generate` killed with SIGKILL mid-run and started again: nothing lost, nothing re-paid.
@Suite struct GenerateCrashTests {
    /// A running `refinery mock-llm` subprocess and its base URL.
    final class MockProcess {
        let process = Process()
        let base: String

        init(latencyMs: Int, extra: [String] = [], environment: [String: String] = [:]) throws {
            process.executableURL = try CommandLineTests.executable()
            process.arguments = ["mock-llm", "--port", "0", "--latency-ms", "\(latencyMs)"] + extra
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
            let out = Pipe()
            process.standardOutput = out
            process.standardError = FileHandle.nullDevice
            try process.run()
            var text = ""
            let deadline = Date().addingTimeInterval(20)
            while !text.contains("/v1\n") && Date() < deadline {
                let data = out.fileHandleForReading.availableData
                if data.isEmpty { break }
                text += String(decoding: data, as: UTF8.self)
            }
            guard let range = text.range(of: "http://127.0.0.1:"), let end = text[range.upperBound...].range(of: "/v1") else {
                process.terminate()
                throw TextError("mock-llm did not report its port: \(text)")
            }
            base = "http://127.0.0.1:" + text[range.upperBound..<end.lowerBound] + "/v1"
        }

        /// A mock started elsewhere (another network namespace); only its address is known here.
        private init(base: String) {
            self.base = base
        }

        static func remote(base: String) throws -> MockProcess { MockProcess(base: base) }

        func stats() throws -> JSONValue {
            guard let url = URL(string: base.replacingOccurrences(of: "/v1", with: "/stats")) else { throw TextError("bad URL") }
            return try JSONValue.parse(bytes: Array(try Data(contentsOf: url)))
        }

        deinit { if process.isRunning { process.terminate() } }
    }

    static func generate(_ mock: MockProcess, state: String, out: String, articles: String) throws -> Process {
        let process = Process()
        process.executableURL = try CommandLineTests.executable()
        process.arguments = ["data", "generate", "--articles", articles, "--state", state, "--out", out,
                             "--base-url", mock.base, "--model", "mock-model", "--slots", "4"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        return process
    }

    @Test func killedRunResumesToTheSameDatasetWithoutRepayingFinishedChunks() async throws {
        try await offThePool {
            let dir = try TrainCommandTests.temporary()
            let articles = dir.appendingPathComponent("articles.json")
            let paragraphs = (0..<6).map { j in
                (0..<14).map { k in "Sentence \(k) of paragraph \(j) talks about topic \(j * 31 + k) in some detail." }.joined(separator: " ")
            }
            let rows: [JSONValue] = (0..<50).map { i in
                .object([("id", .string("a\(i)")), ("content", .string("Article \(i). " + paragraphs.map { "Item \(i): " + $0 }.joined(separator: "\n\n")))])
            }
            try JSONValue.object([("artifact_data", .array(rows))]).compactText.write(to: articles, atomically: true, encoding: .utf8)

            let reference = try MockProcess(latencyMs: 5)
            let whole = try Self.generate(reference, state: dir.appendingPathComponent("a.db").path, out: dir.appendingPathComponent("a.jsonl").path, articles: articles.path)
            whole.waitUntilExit()
            #expect(whole.terminationStatus == 0)

            let mock = try MockProcess(latencyMs: 30)
            let statePath = dir.appendingPathComponent("b.db").path
            let outPath = dir.appendingPathComponent("b.jsonl").path
            let first = try Self.generate(mock, state: statePath, out: outPath, articles: articles.path)
            var doneBeforeKill: [String] = []
            let deadline = Date().addingTimeInterval(60)
            while Date() < deadline {
                Thread.sleep(forTimeInterval: 0.05)
                guard FileManager.default.fileExists(atPath: statePath), let store = try? RunStore(path: statePath, readOnly: true),
                      let chunks = try? store.allChunks() else { continue }
                let done = chunks.filter { $0.status == .done }
                if done.count >= 20 {
                    kill(first.processIdentifier, SIGKILL)
                    first.waitUntilExit()
                    doneBeforeKill = (try RunStore(path: statePath, readOnly: true).allChunks()).filter { $0.status == .done }.map(\.text)
                    break
                }
            }
            #expect(first.terminationReason == .uncaughtSignal, "the first run was killed mid-way")
            #expect(doneBeforeKill.count >= 20)
            let total = try RunStore(path: statePath, readOnly: true).allChunks().count
            #expect(doneBeforeKill.count < total, "killed before the end")

            let second = try Self.generate(mock, state: statePath, out: outPath, articles: articles.path)
            second.waitUntilExit()
            #expect(second.terminationStatus == 0)
            #expect(try Data(contentsOf: URL(fileURLWithPath: outPath)) == Data(contentsOf: dir.appendingPathComponent("a.jsonl")))
            #expect(try Data(contentsOf: URL(fileURLWithPath: dir.appendingPathComponent("b.test.jsonl").path))
                    == Data(contentsOf: dir.appendingPathComponent("a.test.jsonl")))
            let answered = try mock.stats()["answered"]
            for text in doneBeforeKill {
                #expect(answered?[StableHash.hex(text)]?.intValue == 1, "a chunk finished before the kill was answered again")
            }
        }
    }

    @Test func configDrivenRunAndAWrongKeyThatAppearsNowhere() async throws {
        try await offThePool {
            let dir = try TrainCommandTests.temporary()
            let articles = dir.appendingPathComponent("articles.jsonl")
            let text = (0..<30).map { "Sentence \($0) explains one more detail of the topic at hand." }.joined(separator: " ")
            try (0..<3).map { "{\"id\": \"d\($0)\", \"text\": \"Doc \($0). \(text)\"}" }.joined(separator: "\n").write(to: articles, atomically: true, encoding: .utf8)
            let mock = try MockProcess(latencyMs: 0, extra: ["--require-key-env", "MOCK_KEY", "--pairs", "3"], environment: ["MOCK_KEY": "sk-correct-horse"])
            let yaml = """
            data:
              articles: \(articles.path)
              state: \(dir.appendingPathComponent("s.db").path)
              out: \(dir.appendingPathComponent("o.jsonl").path)
              format: alpaca
              test_fraction: 0
            generate:
              base_url: \(mock.base)
              model: mock-model
              api_key_env: MY_KEY
              pairs_per_chunk: 3
              user_prompt: "Write {count} pairs.\\nExtract:\\n{extract}"
            """
            try yaml.write(to: dir.appendingPathComponent("run.yaml"), atomically: true, encoding: .utf8)
            let secret = "sk-wrong-battery-staple"
            let refused = try CommandLineTests.run(["data", "generate", "--config", dir.appendingPathComponent("run.yaml").path], environment: ["MY_KEY": secret])
            #expect(refused.status != 0 && refused.stderr.contains("API key was refused"), "\(refused.stderr)")
            #expect(!(refused.stdout + refused.stderr).contains(secret))
            for suffix in ["", "-wal", "-shm"] {
                if let data = FileManager.default.contents(atPath: dir.appendingPathComponent("s.db").path + suffix) {
                    #expect(data.range(of: Data(secret.utf8)) == nil)
                }
            }
            let good = try CommandLineTests.run(["data", "generate", "--config", dir.appendingPathComponent("run.yaml").path], environment: ["MY_KEY": "sk-correct-horse"])
            #expect(good.status == 0, "\(good.stderr)")
            let rows = try String(contentsOf: dir.appendingPathComponent("o.jsonl"), encoding: .utf8).split(separator: "\n")
            #expect(rows.count > 0 && rows.count % 3 == 0, "3 pairs per chunk")
            #expect(rows.first?.contains("\"instruction\"") == true, "alpaca format")
        }
    }
}
