import Foundation
import GRDB
import RefineryCore
import RefineryModel
import Testing

/// `refinery data embed` and `data dedup --method semantic`: the real executable, a local model
/// folder, the real mock-llm `/v1/embeddings` over HTTP, SQLite state, and SIGKILL mid-run.
@Suite struct EmbedCommandTests {
    static let minibert = TrainCommandTests.fixtures.appendingPathComponent("minibert")

    static func write(_ rows: [String], to url: URL) throws {
        try Data(rows.map { $0 + "\n" }.joined().utf8).write(to: url)
    }

    static func samples(_ count: Int) -> [String] {
        (0..<count).map { i in
            JSONValue.object([("instruction", .string("Question number \(i) about topic \(i % 7)?")),
                              ("output", .string("Answer \(i): " + String(repeating: "word\(i % 5) ", count: 3 + i % 4)))]).compactText
        }
    }

    static func embeddings(_ url: URL) throws -> [[Float]] {
        try String(contentsOf: url, encoding: .utf8).split(separator: "\n").map { line in
            try #require(try JSONValue.parse(String(line))["embedding"]?.arrayValue).compactMap { $0.doubleValue.map(Float.init) }
        }
    }

    @Test func localModelAddsTheVectorsSentenceEmbedderMakes() async throws {
        try await offThePool {
            let dir = try TrainCommandTests.temporary()
            defer { try? FileManager.default.removeItem(at: dir) }
            let input = dir.appendingPathComponent("in.jsonl"), output = dir.appendingPathComponent("out.jsonl")
            let rows = Self.samples(5)
            try Self.write(rows, to: input)
            let result = try CommandLineTests.run(["data", "embed", "--input", input.path, "--output", output.path,
                                                   "--model", Self.minibert.path, "--dtype", "float32"])
            #expect(result.status == 0, "\(result.stderr)")
            #expect(result.stdout.contains("embedded 5 samples (32 dimensions"))
            let got = try Self.embeddings(output)
            let embedder = try SentenceEmbedder(directory: Self.minibert, dtype: .float32)
            let want = try embedder.embed(try rows.map { row in
                let json = try JSONValue.parse(row)
                return (json["instruction"]?.stringValue ?? "") + "\n\n" + (json["output"]?.stringValue ?? "")
            })
            #expect(got.count == 5)
            for (g, w) in zip(got, want) {
                #expect(g.count == 32)
                #expect(zip(g, w).allSatisfy { abs($0 - $1) <= 1e-6 * max(1, abs($1)) }, "the written vector is the embedder's")
            }
            // The input fields are kept as they were.
            let first = try JSONValue.parse(String(try String(contentsOf: output, encoding: .utf8).split(separator: "\n")[0]))
            #expect(first["instruction"]?.stringValue == "Question number 0 about topic 0?")

            // --field embeds one field; a line without it is named.
            try Self.write([rows[0], #"{"text": "no instruction field here"}"#], to: input)
            let missing = try CommandLineTests.run(["data", "embed", "--input", input.path, "--output", output.path,
                                                    "--model", Self.minibert.path, "--field", "instruction"])
            #expect(missing.status != 0)
            #expect(missing.stderr.contains("in.jsonl:2") && missing.stderr.contains("\"instruction\""), "\(missing.stderr)")
            // No model at all, or a folder that is not one.
            let none = try CommandLineTests.run(["data", "embed", "--input", input.path, "--output", output.path])
            #expect(none.status != 0 && none.stderr.contains("model:"), "\(none.stderr)")
            let wrong = try CommandLineTests.run(["data", "embed", "--input", input.path, "--output", output.path, "--model", dir.path])
            #expect(wrong.status != 0 && wrong.stderr.contains("config.json"), "\(wrong.stderr)")
            // An empty dataset: a warning and an empty output.
            try Data().write(to: input)
            let empty = try CommandLineTests.run(["data", "embed", "--input", input.path, "--output", output.path, "--model", Self.minibert.path])
            #expect(empty.status == 0 && empty.stderr.contains("holds no samples"), "\(empty.stderr)")
            #expect(try Data(contentsOf: output).isEmpty)
        }
    }

    @Test func killedEndpointRunResumesWithoutEmbeddingFinishedTextsAgain() async throws {
        try await offThePool {
            let dir = try TrainCommandTests.temporary()
            defer { try? FileManager.default.removeItem(at: dir) }
            let mock = try GenerateCrashTests.MockProcess(latencyMs: 400)
            let input = dir.appendingPathComponent("in.jsonl"), output = dir.appendingPathComponent("out.jsonl")
            let state = dir.appendingPathComponent("state.sqlite")
            try Self.write(Self.samples(80), to: input)
            let arguments = ["data", "embed", "--input", input.path, "--output", output.path, "--state", state.path,
                             "--base-url", mock.base, "--embedding-model", "mock-model", "--batch-size", "4"]
            let process = Process()
            process.executableURL = try CommandLineTests.executable()
            process.arguments = arguments
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
            // Kill once a few batches are stored in the state (400 ms per request), well before all 20 are (8 s).
            let deadline = Date().addingTimeInterval(60)
            func stored() -> Int {
                (try? DatabaseQueue(path: state.path).read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM embedding") ?? 0 }) ?? 0
            }
            while stored() < 8 && Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            #expect(!FileManager.default.fileExists(atPath: output.path), "nothing half written")
            let before = try mock.stats()["texts_embedded"]?.intValue ?? 0
            #expect(before >= 8 && before < 80, "killed midway: \(before) texts embedded")

            let resumed = try CommandLineTests.run(arguments)
            #expect(resumed.status == 0, "\(resumed.stderr)")
            #expect(resumed.stderr.contains("texts embedded before (from the state)"), "\(resumed.stderr)")
            let stats = try mock.stats()
            #expect(stats["texts_embedded"]?.intValue == 80)
            // Only a request in flight at the kill (at most one batch) can be asked again.
            #expect((stats["texts_embedded_more_than_once"]?.intValue ?? 99) <= 4, "\(stats.compactText)")
            let vectors = try Self.embeddings(output)
            #expect(vectors.count == 80 && vectors.allSatisfy { $0.count == 64 })

            // A third run needs no endpoint at all: everything is in the state (the cache is keyed
            // by the endpoint's URL and model, so the same URL with the server gone).
            mock.process.terminate()
            mock.process.waitUntilExit()
            let offline = try CommandLineTests.run(arguments)
            #expect(offline.status == 0, "\(offline.stderr)")
            #expect(try Self.embeddings(output) == vectors)
        }
    }

    @Test func semanticDedupDropsCopiesAndSaysWhy() async throws {
        try await offThePool {
            let dir = try TrainCommandTests.temporary()
            defer { try? FileManager.default.removeItem(at: dir) }
            let mock = try GenerateCrashTests.MockProcess(latencyMs: 0)
            let input = dir.appendingPathComponent("in.jsonl"), output = dir.appendingPathComponent("out.jsonl")
            let state = dir.appendingPathComponent("state.sqlite")
            var rows = Self.samples(12)
            rows.append(rows[3])
            rows.append(rows[7])
            try Self.write(rows, to: input)
            let result = try CommandLineTests.run(["data", "dedup", "--method", "semantic", "--input", input.path, "--output", output.path,
                                                   "--state", state.path, "--base-url", mock.base, "--embedding-model", "mock-model",
                                                   "--threshold", "0.99", "--clusters", "3"])
            #expect(result.status == 0, "\(result.stderr)")
            #expect(result.stdout.contains("kept 12 of 14 samples"), "\(result.stdout)")
            let dropped = try DatabaseQueue(path: state.path).read { db in
                try String.fetchAll(db, sql: "SELECT sample FROM curation_decision WHERE kept = 0 ORDER BY sample")
            }
            #expect(dropped.count == 2 && dropped.allSatisfy { $0.hasSuffix("#2") }, "the later copies go: \(dropped)")
            let why = try CommandLineTests.run(["data", "why", "--state", state.path, try #require(dropped.first)])
            #expect(why.status == 0, "\(why.stderr)")
            #expect(why.stdout.contains("semantic duplicate"), "\(why.stdout)")
            // MinHash options are refused with the semantic ones, and the reverse.
            let mixed = try CommandLineTests.run(["data", "dedup", "--method", "minhash", "--input", input.path, "--output", output.path,
                                                  "--model", Self.minibert.path])
            #expect(mixed.status != 0 && mixed.stderr.contains("--method semantic"), "\(mixed.stderr)")
        }
    }
}
