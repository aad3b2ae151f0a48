import Foundation
import RefineryCore
import RefineryModel
import RefineryText
import Testing

/// Runs the real `refinery` executable (built next to the test bundle) as a subprocess.
@Suite struct CommandLineTests {
    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let llama = packageRoot.appendingPathComponent("Tests/RefineryModelTests/Fixtures/llama-gqa").path

    struct Result {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    static func executable() throws -> URL {
        // The test bundle lives in .build/<config>/; the executable is built beside it.
        var directory = Bundle.main.bundleURL
        for _ in 0..<3 {
            let candidate = directory.appendingPathComponent("refinery")
            if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
            directory = directory.deletingLastPathComponent()
        }
        let fallback = packageRoot.appendingPathComponent(".build/debug/refinery")
        guard FileManager.default.isExecutableFile(atPath: fallback.path) else {
            throw TextError("refinery executable not found next to \(Bundle.main.bundleURL.path); run `swift build` first")
        }
        return fallback
    }

    static func run(_ arguments: [String], stdin: String? = nil, environment: [String: String] = [:]) throws -> Result {
        let process = Process()
        process.executableURL = try executable()
        process.arguments = arguments
        if !environment.isEmpty { process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
        let out = Pipe(), err = Pipe(), input = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = input
        try process.run()
        if let stdin { input.fileHandleForWriting.write(Data(stdin.utf8)) }
        try input.fileHandleForWriting.close()
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        let errData = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Result(status: process.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
                      stderr: String(decoding: errData, as: UTF8.self))
    }

    @Test func tokenizeMatchesTheLibrary() async throws {
        try await offThePool {
            let result = try Self.run(["tokenize", "--model", Self.llama], stdin: "{\"text\": \"Hello world\"}\n{\"text\": \"数据 🙂\"}\n")
            #expect(result.status == 0, "\(result.stderr)")
            let tokenizer = try Tokenizer(contentsOf: URL(fileURLWithPath: Self.llama).appendingPathComponent("tokenizer.json"))
            let lines = result.stdout.split(separator: "\n").map(String.init)
            #expect(lines.count == 2)
            let expected = ["Hello world", "数据 🙂"].map { text in
                JSONValue.object([("ids", .array(tokenizer.encode(text).ids.map { .int($0) }))]).compactText
            }
            #expect(lines == expected)
        }
    }

    @Test func renderUsesTheModelTemplate() async throws {
        try await offThePool {
            let result = try Self.run(["render", "--model", Self.llama, "--add-generation-prompt"],
                                      stdin: "{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}]}\n")
            #expect(result.status == 0)
            let text = try JSONValue.parse(result.stdout.trimmingCharacters(in: .newlines))["text"]?.stringValue
            #expect(text == "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")
        }
    }

    @Test func evalPrintsTheReferenceLoss() async throws {
        try await offThePool {
            let result = try Self.run(["eval", "--model", Self.llama, "--data", Self.llama + "/eval.jsonl"])
            #expect(result.status == 0, "\(result.stderr)")
            let json = try JSONValue.parse(result.stdout.trimmingCharacters(in: .newlines))
            let expected = try JSONValue.parse(bytes: Array(try Data(contentsOf: URL(fileURLWithPath: Self.llama + "/expected.json"))))
            let loss = try #require(json["loss"]?.doubleValue)
            let want = try #require(expected["eval"]?["loss"]?.doubleValue)
            #expect(abs(loss - want) / want <= 1e-5)
            #expect(json["tokens"]?.intValue == expected["eval"]?["tokens"]?.intValue)
            #expect(result.stderr.contains("3/3 samples"), "progress is shown on stderr")
        }
    }

    @Test func generateJSONIsTheGreedyReference() async throws {
        try await offThePool {
            let result = try Self.run(["generate", "--model", Self.llama, "--prompt", "The assistant answers", "--max-new-tokens", "16", "--json"])
            #expect(result.status == 0, "\(result.stderr)")
            let json = try JSONValue.parse(result.stdout.trimmingCharacters(in: .newlines))
            let expected = try JSONValue.parse(bytes: Array(try Data(contentsOf: URL(fileURLWithPath: Self.llama + "/expected.json"))))
            #expect(json["ids"] == expected["greedy"]?["ids"])
        }
    }

    @Test func generateAnswersAFileInBatchesLikeOnePromptAtATime() async throws {
        try await offThePool {
            let dir = try TrainCommandTests.temporary()
            let input = dir.appendingPathComponent("prompts.jsonl"), output = dir.appendingPathComponent("answers.jsonl")
            let samples = ["{\"text\": \"The assistant answers\"}", "{\"instruction\": \"Say hi\", \"output\": \"hi\"}",
                           "{\"messages\": [{\"role\": \"user\", \"content\": \"Hello\"}], \"id\": 7}", "{\"text\": \"数据\"}"]
            try Data((samples.joined(separator: "\n") + "\n").utf8).write(to: input)
            let batched = try Self.run(["generate", "--model", Self.llama, "--input", input.path, "--output", output.path,
                                        "--max-new-tokens", "12", "--batch-size", "3"])
            #expect(batched.status == 0, "\(batched.stderr)")
            #expect(batched.stderr.contains("4 samples"), "\(batched.stderr)")
            let rows = try String(decoding: Data(contentsOf: output), as: UTF8.self).split(separator: "\n").map { try JSONValue.parse(String($0)) }
            #expect(rows.count == 4 && rows[2]["id"]?.intValue == 7, "input fields are kept")
            // The text samples' answers equal one-prompt runs; the chat sample's equals a run on its rendered prompt.
            for (index, prompt) in [(0, "The assistant answers"), (3, "数据")] {
                let alone = try Self.run(["generate", "--model", Self.llama, "--prompt", prompt, "--max-new-tokens", "12", "--json"])
                #expect(rows[index]["completion"] == (try JSONValue.parse(alone.stdout.trimmingCharacters(in: .newlines)))["text"])
            }
            let once = try Self.run(["generate", "--model", Self.llama, "--input", input.path, "--max-new-tokens", "12", "--batch-size", "1"])
            #expect(once.stdout.split(separator: "\n").map { try? JSONValue.parse(String($0)) } == rows.map { $0 }, "batch size changes nothing")
            try Data("{\"text\": \"ok\"}\n{\"messages\": [{\"role\": \"assistant\", \"content\": \"x\"}]}\n".utf8).write(to: input)
            let bad = try Self.run(["generate", "--model", Self.llama, "--input", input.path, "--output", output.path])
            #expect(bad.status != 0 && bad.stderr.contains("prompts.jsonl:2") && bad.stderr.contains("no user message"), "\(bad.stderr)")
            #expect(rows.count == (try String(decoding: Data(contentsOf: output), as: UTF8.self)).split(separator: "\n").count,
                    "a failed run leaves the earlier output whole")
            let neither = try Self.run(["generate", "--model", Self.llama])
            #expect(neither.status != 0 && neither.stderr.contains("--input"))
        }
    }

    @Test func badInputFailsWithAClearMessage() async throws {
        try await offThePool {
            let missing = try Self.run(["eval", "--model", "/nonexistent/model", "--data", Self.llama + "/eval.jsonl"])
            #expect(missing.status != 0)
            #expect(missing.stderr.contains("tokenizer.json") && missing.stderr.contains("/nonexistent/model"), "\(missing.stderr)")
            let badLine = try Self.run(["tokenize", "--model", Self.llama], stdin: "{\"text\": \"ok\"}\n{\"text\": 3}\n")
            #expect(badLine.status != 0)
            #expect(badLine.stderr.contains("<stdin>:2"), "\(badLine.stderr)")
            let badTemplate = try Self.run(["render", "--model", Self.llama, "--template", "nope"], stdin: "{\"messages\": []}\n")
            #expect(badTemplate.status != 0 && badTemplate.stderr.contains("chatml"))
            let badFlag = try Self.run(["generate", "--model", Self.llama, "--prompt", "x", "--top-p", "0"])
            #expect(badFlag.status != 0 && badFlag.stderr.contains("--top-p"))
        }
    }
}

/// `refinery chat` renders each turn with the template and answers greedily.
@Suite struct ChatCommandTests {
    @Test func answersEachTurnThroughTheTemplate() async throws {
        try await offThePool {
            let result = try CommandLineTests.run(["chat", "--model", CommandLineTests.llama, "--max-new-tokens", "8"], stdin: "Hi there\n/reset\nHi there\n/exit\nignored\n")
            #expect(result.status == 0, "\(result.stderr)")
            let lines = result.stdout.split(separator: "\n", omittingEmptySubsequences: false)
            #expect(lines.count >= 2 && lines[0] == lines[1], "after /reset the same question gets the same greedy answer")
            #expect(!lines[0].isEmpty)
            // The same answer computed through the library: template with generation prompt, greedy.
            let directory = URL(fileURLWithPath: CommandLineTests.llama)
            let chat = try ChatTokenizer(directory: directory)
            let model = try LlamaModel(directory: directory)
            let prompt = try chat.render([ChatMessage(role: "user", content: "Hi there")], addGenerationPrompt: true)
            let ids = try model.generate(prompt: chat.tokenizer.encode(prompt, addSpecialTokens: false).ids,
                                         options: SamplingOptions(maxNewTokens: 8, stopTokens: chat.stopTokenIDs.union(model.config.eosTokenIDs)))
            #expect(String(lines[0]) == chat.tokenizer.decode(ids, skipSpecialTokens: true))
        }
    }
}
