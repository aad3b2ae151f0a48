import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
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

        init(latencyMs: Int) throws {
            process.executableURL = try CommandLineTests.executable()
            process.arguments = ["mock-llm", "--port", "0", "--latency-ms", "\(latencyMs)"]
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

        func stats() throws -> JSONValue {
            guard let url = URL(string: base.replacingOccurrences(of: "/v1", with: "/stats")) else { throw TextError("bad URL") }
            return try JSONValue.parse(bytes: Array(try Data(contentsOf: url)))
        }

        deinit { process.terminate() }
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

    @Test func killedRunResumesToTheSameDatasetWithoutRepayingFinishedChunks() throws {
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
            guard FileManager.default.fileExists(atPath: statePath), let store = try? RunStore(path: statePath),
                  let chunks = try? store.allChunks() else { continue }
            let done = chunks.filter { $0.status == .done }
            if done.count >= 20 {
                kill(first.processIdentifier, SIGKILL)
                first.waitUntilExit()
                doneBeforeKill = (try RunStore(path: statePath).allChunks()).filter { $0.status == .done }.map(\.text)
                break
            }
        }
        #expect(first.terminationReason == .uncaughtSignal, "the first run was killed mid-way")
        #expect(doneBeforeKill.count >= 20)
        let total = try RunStore(path: statePath).allChunks().count
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
