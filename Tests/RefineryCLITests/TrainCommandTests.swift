import Foundation
import RefineryCore
import RefineryStore
import RefineryText
import Testing

/// `refinery train` / `export` end to end, and their refusals of bad input.
@Suite struct TrainCommandTests {
    static let fixtures = CommandLineTests.packageRoot.appendingPathComponent("Tests/RefineryModelTests/Fixtures")
    static let qwen = fixtures.appendingPathComponent("qwen2-tied").path
    static let llama = fixtures.appendingPathComponent("llama-gqa").path
    static var trainData: String { qwen + "/training/train.jsonl" }

    static func temporary() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("refinery-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    @Test func trainWritesAdapterLogAndRefusesToOverwrite() async throws {
        try await offThePool {
            let out = try Self.temporary().appendingPathComponent("run")
            let args = ["train", "--model", Self.qwen, "--data", Self.trainData, "--output", out.path, "--steps", "3", "--lora-r", "4", "--lr", "1e-3"]
            let first = try CommandLineTests.run(args)
            #expect(first.status == 0, "\(first.stderr)")
            #expect(first.stderr.contains("step 3/3"), "progress line")
            let log = try String(contentsOf: out.appendingPathComponent("train_log.jsonl"), encoding: .utf8).split(separator: "\n")
            #expect(log.count == 3)
            let row = try JSONValue.parse(String(log[0]))
            for key in ["step", "loss", "grad_norm", "lr", "tokens"] { #expect(row[key] != nil, "\(key)") }
            let config = try JSONValue.parse(bytes: Array(try Data(contentsOf: out.appendingPathComponent("adapter_config.json"))))
            #expect(config["r"]?.intValue == 4 && config["peft_type"]?.stringValue == "LORA")
            let again = try CommandLineTests.run(args)
            #expect(again.status != 0 && again.stderr.contains("--resume") && again.stderr.contains("--overwrite"))
            let overwrite = try CommandLineTests.run(args + ["--overwrite"])
            #expect(overwrite.status == 0, "\(overwrite.stderr)")
        }
    }

    @Test func configFileWithFlagOverrides() async throws {
        try await offThePool {
            let dir = try Self.temporary()
            let yaml = """
            train:
              model: \(Self.qwen)
              data: \(Self.trainData)
              output: \(dir.appendingPathComponent("run").path)
              lora-r: 4
              lr: 0.001
              steps: 5
              no_shuffle: true
            """
            try yaml.write(to: dir.appendingPathComponent("run.yaml"), atomically: true, encoding: .utf8)
            let result = try CommandLineTests.run(["train", "--config", dir.appendingPathComponent("run.yaml").path, "--steps", "2"])
            #expect(result.status == 0, "\(result.stderr)")
            let log = try String(contentsOf: dir.appendingPathComponent("run/train_log.jsonl"), encoding: .utf8)
            #expect(log.split(separator: "\n").count == 2, "the --steps flag overrides the config")
            try "train:\n  modle: x\n".write(to: dir.appendingPathComponent("bad.yaml"), atomically: true, encoding: .utf8)
            let bad = try CommandLineTests.run(["train", "--config", dir.appendingPathComponent("bad.yaml").path])
            #expect(bad.status != 0 && bad.stderr.contains("unknown key train.modle"), "\(bad.stderr)")
        }
    }

    @Test func malformedDatasetNamesTheLine() async throws {
        try await offThePool {
            let dir = try Self.temporary()
            let data = dir.appendingPathComponent("bad.jsonl")
            try "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"assistant\", \"content\": \"b\"}]}\n{\"messages\": [}\n".write(to: data, atomically: true, encoding: .utf8)
            let result = try CommandLineTests.run(["train", "--model", Self.qwen, "--data", data.path, "--output", dir.appendingPathComponent("o").path])
            #expect(result.status != 0 && result.stderr.contains("bad.jsonl:2"), "\(result.stderr)")
            let unknown = try CommandLineTests.run(["train", "--model", Self.qwen, "--data", Self.trainData, "--output", dir.appendingPathComponent("o").path, "--format", "csv"])
            #expect(unknown.status != 0 && unknown.stderr.contains("unknown --format csv"))
        }
    }

    @Test func datasetThatNeverTrainsEndOfTurnIsRefused() async throws {
        try await offThePool {
            let dir = try Self.temporary()
            let data = dir.appendingPathComponent("users.jsonl")
            try "{\"messages\": [{\"role\": \"user\", \"content\": \"only a question\"}]}\n".write(to: data, atomically: true, encoding: .utf8)
            let result = try CommandLineTests.run(["train", "--model", Self.qwen, "--data", data.path, "--output", dir.appendingPathComponent("o").path])
            #expect(result.status != 0 && result.stderr.contains("no token"), "\(result.stderr)")
            // phi3's <|end|> is no special token of this tokenizer: assistant turns end in plain text.
            let noEOS = try CommandLineTests.run(["train", "--model", Self.qwen, "--data", Self.trainData, "--output", dir.appendingPathComponent("o").path, "--template", "phi3"])
            #expect(noEOS.status != 0 && noEOS.stderr.contains("never include an end-of-turn"), "\(noEOS.stderr)")
        }
    }

    @Test func mismatchedInitAdapterIsRefused() async throws {
        try await offThePool {
            let dir = try Self.temporary()
            let result = try CommandLineTests.run(["train", "--model", Self.qwen, "--data", Self.trainData, "--output", dir.appendingPathComponent("o").path,
                                                   "--init-adapter", Self.llama + "/training/init_adapter"])
            #expect(result.status != 0 && result.stderr.contains("trained on another model"), "\(result.stderr)")
        }
    }

    @Test func divergingRunStopsWithStepAndCheckpoint() async throws {
        try await offThePool {
            let dir = try Self.temporary()
            let result = try CommandLineTests.run(["train", "--model", Self.qwen, "--data", Self.trainData, "--output", dir.appendingPathComponent("o").path,
                                                   "--lr", "1e30", "--steps", "8", "--checkpoint-every", "1", "--max-grad-norm", "0", "--method", "full"])
            #expect(result.status != 0)
            #expect(result.stderr.contains("not finite") && result.stderr.contains("last good checkpoint"), "\(result.stderr)")
        }
    }

    @Test func exportWritesAModelFolder() async throws {
        try await offThePool {
            let dir = try Self.temporary()
            let result = try CommandLineTests.run(["export", "--model", Self.qwen, "--adapter", Self.qwen + "/training/lora_final", "--output", dir.appendingPathComponent("m").path])
            #expect(result.status == 0, "\(result.stderr)")
            let eval = try CommandLineTests.run(["eval", "--model", dir.appendingPathComponent("m").path, "--data", Self.qwen + "/eval.jsonl"])
            #expect(eval.status == 0, "\(eval.stderr)")
            let again = try CommandLineTests.run(["export", "--model", Self.qwen, "--adapter", Self.qwen + "/training/lora_final", "--output", dir.appendingPathComponent("m").path])
            #expect(again.status != 0 && again.stderr.contains("--overwrite"))
        }
    }
}

/// `refinery data convert` round trips between the training formats.
@Suite struct DataConvertTests {
    @Test func convertsAndRoundTrips() async throws {
        try await offThePool {
            let dir = try TrainCommandTests.temporary()
            let input = dir.appendingPathComponent("in.jsonl")
            try """
            {"instruction": "Name a colour.", "input": "", "output": "Blue.", "system": "Be brief."}
            {"INSTRUCTION": "Say hi", "RESPONSE": "Hi!"}

            """.write(to: input, atomically: true, encoding: .utf8)
            let toShareGPT = try CommandLineTests.run(["data", "convert", "--input", input.path, "--output", dir.appendingPathComponent("s.jsonl").path, "--to", "sharegpt"])
            #expect(toShareGPT.status == 0, "\(toShareGPT.stderr)")
            let back = try CommandLineTests.run(["data", "convert", "--input", dir.appendingPathComponent("s.jsonl").path, "--output", dir.appendingPathComponent("a.jsonl").path, "--to", "alpaca"])
            #expect(back.status == 0, "\(back.stderr)")
            let lines = try String(contentsOf: dir.appendingPathComponent("a.jsonl"), encoding: .utf8).split(separator: "\n")
            #expect(lines.first == #"{"instruction":"Name a colour.","input":"","output":"Blue.","system":"Be brief."}"#)
            #expect(lines.last == #"{"instruction":"Say hi","input":"","output":"Hi!"}"#)
            let multi = dir.appendingPathComponent("multi.jsonl")
            try #"{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}, {"role": "assistant", "content": "d"}]}"#
                .write(to: multi, atomically: true, encoding: .utf8)
            let refused = try CommandLineTests.run(["data", "convert", "--input", multi.path, "--output", dir.appendingPathComponent("x.jsonl").path, "--to", "alpaca"])
            #expect(refused.status != 0 && refused.stderr.contains("multi.jsonl:1") && refused.stderr.contains("4 turns"), "\(refused.stderr)")
        }
    }
}

/// `refinery data dedup` and `data split` on a generated-style dataset.
@Suite struct DataCurationCommandTests {
    @Test func filterDropsByRulesWritesRejectsWithReasonsAndNamesBadRules() async throws {
        try await offThePool {
            let dir = try TrainCommandTests.temporary()
            let input = dir.appendingPathComponent("in.jsonl"), output = dir.appendingPathComponent("out.jsonl")
            let rejected = dir.appendingPathComponent("rejected.jsonl"), state = dir.appendingPathComponent("state.db").path
            let rows = [
                #"{"instruction": "What is a warmup?", "output": "It raises the learning rate over the first steps so the first updates stay small.", "lineage": {"id": "ok"}}"#,
                #"{"instruction": "Summarise.", "output": "As an AI language model, I cannot read the article you mention.", "lineage": {"id": "refusal"}}"#,
                #"{"instruction": "Show code.", "output": "Here is the program you asked for:\n```python\nprint(1)\n", "lineage": {"id": "fence"}}"#,
                #"{"instruction": "Why?", "output": "Short.", "lineage": {"id": "short"}}"#,
            ]
            try rows.joined(separator: "\n").write(to: input, atomically: true, encoding: .utf8)
            let run = try CommandLineTests.run(["data", "filter", "--input", input.path, "--output", output.path, "--rejected", rejected.path,
                                                "--min-answer-chars", "20", "--language", "en", "--state", state])
            #expect(run.status == 0 && run.stdout.contains("kept 1 of 4"), "\(run.stdout)\(run.stderr)")
            let dropped = try String(contentsOf: rejected, encoding: .utf8).split(separator: "\n").map { try JSONValue.parse(String($0)) }
            #expect(dropped.map { $0["lineage"]?["id"]?.stringValue } == ["refusal", "fence", "short"])
            #expect(dropped[0]["rejected"]?.stringValue?.hasPrefix("refusal or AI boilerplate") == true)
            #expect(dropped[2]["rejected"]?.stringValue == "answer has 6 characters, fewer than 20")
            let why = try CommandLineTests.run(["data", "why", "fence", "--state", state])
            #expect(why.stdout.contains("code block is never closed"), "\(why.stdout)")
            let bad = try CommandLineTests.run(["data", "filter", "--input", input.path, "--output", output.path, "--exclude-regex", "(oops"])
            #expect(bad.status != 0 && bad.stderr.contains("(oops is not a valid regular expression"), "\(bad.stderr)")
            let range = try CommandLineTests.run(["data", "filter", "--input", input.path, "--output", output.path,
                                                  "--min-answer-chars", "50", "--max-answer-chars", "10"])
            #expect(range.status != 0 && range.stderr.contains("min_answer_chars"), "\(range.stderr)")
        }
    }

    /// Every planted copy and near copy of an eval sample is dropped, clean samples stay, the eval
    /// files are byte-identical afterwards, and the output names each match.
    @Test func decontaminationRemovesEveryPlantedCopyAndLeavesEvalFilesAlone() async throws {
        try await offThePool {
            let dir = try TrainCommandTests.temporary()
            let evalA = dir.appendingPathComponent("eval-alpaca.jsonl"), evalB = dir.appendingPathComponent("eval-sharegpt.jsonl")
            let questionA = "Which planet in the solar system has the largest number of confirmed moons according to the latest survey?"
            let questionB = "Explain why the sky appears blue during the day and red at sunset using the physics of Rayleigh scattering."
            try (JSONValue.object([("instruction", .string(questionA)), ("output", .string("Saturn."))]).compactText + "\n")
                .write(to: evalA, atomically: true, encoding: .utf8)
            try (JSONValue.object([("conversations", .array([.object([("from", .string("human")), ("value", .string(questionB))]),
                                                              .object([("from", .string("gpt")), ("value", .string("Short wavelengths scatter more."))])]))]).compactText + "\n")
                .write(to: evalB, atomically: true, encoding: .utf8)
            let before = [try Data(contentsOf: evalA), try Data(contentsOf: evalB)]
            func chat(_ id: String, _ q: String, _ a: String) -> String {
                JSONValue.object([("messages", .array([.object([("role", .string("user")), ("content", .string(q))]),
                                                       .object([("role", .string("assistant")), ("content", .string(a))])])),
                                  ("lineage", .object([("id", .string(id))]))]).compactText
            }
            let train = [
                chat("clean-1", "What does gradient accumulation do?", "It adds the gradients of several micro batches before one step."),
                chat("copy", questionA, "Saturn."),
                chat("case", questionB.uppercased(), "Because blue light scatters more than red light does."),
                chat("near", questionA.replacingOccurrences(of: "latest", with: "most recent"), "Saturn, with well over a hundred."),
                chat("embedded", "Answer this quiz question: " + questionB.lowercased() + " Be brief.", "Rayleigh scattering."),
                chat("clean-2", "Which planet is the largest?", "Jupiter."),
            ]
            let input = dir.appendingPathComponent("train.jsonl"), output = dir.appendingPathComponent("clean.jsonl")
            try train.joined(separator: "\n").write(to: input, atomically: true, encoding: .utf8)
            let run = try CommandLineTests.run(["data", "decontaminate", "--input", input.path, "--output", output.path,
                                                "--eval", evalA.path, "--eval", evalB.path, "--ngram", "8"])
            #expect(run.status == 0 && run.stdout.contains("kept 2 of 6"), "\(run.stdout)\(run.stderr)")
            let kept = try String(contentsOf: output, encoding: .utf8).split(separator: "\n").map { try JSONValue.parse(String($0))["lineage"]?["id"]?.stringValue }
            #expect(kept == ["clean-1", "clean-2"])
            for line in 2...5 { #expect(run.stdout.contains("train.jsonl:\(line)"), "line \(line) is named: \(run.stdout)") }
            #expect(run.stdout.contains("eval-alpaca.jsonl:1") && run.stdout.contains("eval-sharegpt.jsonl:1"))
            #expect([try Data(contentsOf: evalA), try Data(contentsOf: evalB)] == before, "eval files are never written")
            let none = try CommandLineTests.run(["data", "decontaminate", "--input", input.path, "--output", output.path])
            #expect(none.status != 0 && none.stderr.contains("--eval"), "\(none.stderr)")
            try "{\"instruction\": 3}\n".write(to: evalA, atomically: true, encoding: .utf8)
            let bad = try CommandLineTests.run(["data", "decontaminate", "--input", input.path, "--output", output.path, "--eval", evalA.path])
            #expect(bad.status != 0 && bad.stderr.contains("eval-alpaca.jsonl:1"), "\(bad.stderr)")
        }
    }

    /// A curate run killed with SIGKILL inside its second stage resumes with the first stage's
    /// stored decisions (not recomputed) and writes what an uninterrupted run writes; a changed
    /// second stage recomputes only itself.
    @Test func aKilledCurateRunResumesWithoutRecomputingFinishedStages() async throws {
        try await offThePool {
            let dir = try TrainCommandTests.temporary()
            var generator = SplitMix64(seed: 9)
            let vocabulary = (0..<3000).map { "w\($0)" }
            var rows: [String] = []
            for i in 0..<6000 {
                let words = (0..<40).map { _ in vocabulary[Int(generator.next() % 3000)] }.joined(separator: " ")
                let answer = i % 10 == 9 ? String(rows.count / 2) : words   // every tenth a short answer the filter drops
                rows.append(JSONValue.object([("instruction", .string("Question \(i % 5000)?")), ("output", .string(answer)),
                                              ("lineage", .object([("id", .string("s-\(i)"))]))]).compactText)
            }
            let input = dir.appendingPathComponent("in.jsonl")
            try rows.joined(separator: "\n").write(to: input, atomically: true, encoding: .utf8)
            let config = dir.appendingPathComponent("curate.yaml")
            try "curate:\n  - filter: {min_answer_chars: 20}\n  - dedup: {method: minhash, num_perm: 512, shingle: chars, ngram: 5}\n"
                .write(to: config, atomically: true, encoding: .utf8)
            func curate(_ state: String, _ output: String) -> [String] {
                ["data", "curate", "--config", config.path, "--input", input.path, "--output", dir.appendingPathComponent(output).path, "--state", state]
            }
            let reference = try CommandLineTests.run(curate(dir.appendingPathComponent("ref.db").path, "ref.jsonl"))
            #expect(reference.status == 0, "\(reference.stderr)")

            let state = dir.appendingPathComponent("state.db").path
            let first = try ClusterTests.Background(curate(state, "out.jsonl"), log: dir.appendingPathComponent("first.log"))
            let end = Date().addingTimeInterval(60)
            func stored(_ position: Int) -> Bool {
                ((try? RunStore(path: state, readOnly: true).curationStage(pipeline: "curate", position: position)) ?? nil) != nil
            }
            while !stored(0) && Date() < end && first.status == nil { Thread.sleep(forTimeInterval: 0.01) }
            first.kill9()
            #expect(stored(0) && !stored(1), "killed after the filter finished and before the dedup did: \(first.output)")
            #expect(!FileManager.default.fileExists(atPath: dir.appendingPathComponent("out.jsonl").path), "no half-written output")

            let resumed = try CommandLineTests.run(curate(state, "out.jsonl"))
            #expect(resumed.status == 0 && resumed.stderr.contains("filter: unchanged since the last run"), "\(resumed.stderr)")
            #expect(resumed.stderr.contains("dedup: kept"), "the dedup is computed: \(resumed.stderr)")
            #expect(try Data(contentsOf: dir.appendingPathComponent("out.jsonl")) == Data(contentsOf: dir.appendingPathComponent("ref.jsonl")))

            try "curate:\n  - filter: {min_answer_chars: 20}\n  - dedup: {method: minhash, num_perm: 512, shingle: chars, ngram: 6}\n"
                .write(to: config, atomically: true, encoding: .utf8)
            let changed = try CommandLineTests.run(curate(state, "out.jsonl"))
            #expect(changed.stderr.contains("filter: unchanged") && !changed.stderr.contains("dedup: unchanged"), "\(changed.stderr)")
        }
    }

    /// Bad input to every curation command: a malformed line is named with its file and line, an
    /// empty dataset is said to be empty, an empty eval set is refused; eval sets in every format work.
    @Test func curationCommandsNameBadInputAndReadEveryFormat() async throws {
        try await offThePool {
            let dir = try TrainCommandTests.temporary()
            func file(_ name: String, _ text: String) throws -> String {
                let url = dir.appendingPathComponent(name)
                try text.write(to: url, atomically: true, encoding: .utf8)
                return url.path
            }
            let good = try file("good.jsonl", #"{"instruction": "Which planet has the most confirmed moons in the solar system today?", "output": "Saturn has the most."}"# + "\n")
            let broken = try file("broken.jsonl", #"{"instruction": "ok", "output": "fine answer here"}"# + "\n" + #"{"messages": [{"role": "user"}]}"# + "\n")
            let empty = try file("empty.jsonl", "\n\n")
            let config = try file("c.yaml", "curate:\n  - dedup: exact\n")
            let out = dir.appendingPathComponent("out.jsonl").path
            let commands: [[String]] = [
                ["data", "dedup", "--output", out, "--input"], ["data", "filter", "--output", out, "--input"],
                ["data", "decontaminate", "--eval", good, "--output", out, "--input"], ["data", "curate", "--config", config, "--output", out, "--input"],
                ["data", "decontaminate", "--input", good, "--output", out, "--eval"], ["data", "mix", "--output", out, "--source"],
            ]
            for command in commands {
                let bad = try CommandLineTests.run(command + [broken])
                #expect(bad.status != 0 && bad.stderr.contains("broken.jsonl:2"), "\(command): \(bad.stderr)")
            }
            for command in commands.prefix(4) {
                let none = try CommandLineTests.run(command + [empty])
                #expect(none.status == 0 && none.stderr.contains("empty.jsonl holds no samples"), "\(command): \(none.stderr)")
            }
            let noEval = try CommandLineTests.run(["data", "decontaminate", "--input", good, "--output", out, "--eval", empty])
            #expect(noEval.status != 0 && noEval.stderr.contains("has no samples: nothing to protect"), "\(noEval.stderr)")
            // The same eval question in every supported format protects against the same training copy.
            let question = "Which planet has the most confirmed moons in the solar system today?"
            let formats = [
                "openai": #"{"messages": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "Saturn."}]}"#,
                "sharegpt": #"{"conversations": [{"from": "human", "value": "Q"}, {"from": "gpt", "value": "Saturn."}]}"#,
                "alpaca": #"{"instruction": "Q", "input": "", "output": "Saturn."}"#,
                "oasst": #"{"INSTRUCTION": "Q", "RESPONSE": "Saturn."}"#,
                "text": #"{"text": "Q Saturn."}"#,
            ]
            for (format, row) in formats {
                let eval = try file("eval-\(format).jsonl", row.replacingOccurrences(of: "\"Q", with: "\"" + question) + "\n")
                let run = try CommandLineTests.run(["data", "decontaminate", "--input", good, "--output", out, "--eval", eval])
                #expect(run.status == 0 && run.stdout.contains("kept 0 of 1"), "\(format): \(run.stdout)\(run.stderr)")
            }
        }
    }

    /// A mix stage adds rows of other datasets in stated amounts with lineage.source; the stages
    /// after it see them (a dedup removes a mixed-in copy); a bad source entry is named.
    @Test func aMixStageAddsRowsThatLaterStagesSee() async throws {
        try await offThePool {
            let dir = try TrainCommandTests.temporary()
            func write(_ name: String, _ rows: [String]) throws -> String {
                let url = dir.appendingPathComponent(name)
                try rows.joined(separator: "\n").write(to: url, atomically: true, encoding: .utf8)
                return url.path
            }
            func row(_ q: String, _ a: String) -> String { JSONValue.object([("instruction", .string(q)), ("output", .string(a))]).compactText }
            let base = try write("base.jsonl", (0..<10).map { row("Base question \($0)?", "Base answer number \($0).") })
            let general = try write("general.jsonl", [row("Base question 0?", "Base answer number 0.")] + (1..<8).map { row("General \($0)?", "General answer \($0).") })
            let config = try write("c.yaml", ["curate:", "  - mix: {sources: [{path: \(general), count: 8}], seed: 3}", "  - dedup: exact"])
            let out = dir.appendingPathComponent("out.jsonl")
            let run = try CommandLineTests.run(["data", "curate", "--config", config, "--input", base, "--output", out.path])
            #expect(run.status == 0 && run.stderr.contains("mix: added 8 samples") && run.stdout.contains("wrote 17 samples (10 in)"), "\(run.stdout)\(run.stderr)")
            let rows = try String(contentsOf: out, encoding: .utf8).split(separator: "\n").map { try JSONValue.parse(String($0)) }
            #expect(rows.filter { $0["lineage"]?["source"]?.stringValue == "general.jsonl" }.count == 7, "the mixed-in copy of a base row is deduplicated")
            let bad = try write("bad.yaml", ["curate:", "  - mix: {sources: [{path: \(general), count: 2, ratio: 0.5}]}"])
            let refused = try CommandLineTests.run(["data", "curate", "--config", bad, "--input", base, "--output", out.path])
            #expect(refused.status != 0 && refused.stderr.contains("mix.sources[0]") && refused.stderr.contains("one of count"), "\(refused.stderr)")
        }
    }

    /// Decisions go to the state file per sample; `data why` names the stage, the reason and the
    /// sample kept instead; a rerun with the same settings reuses them, a changed threshold recomputes.
    @Test func dedupStoresEveryDecisionAndWhyExplainsIt() async throws {
        try await offThePool {
            let dir = try TrainCommandTests.temporary()
            let input = dir.appendingPathComponent("in.jsonl"), output = dir.appendingPathComponent("out.jsonl")
            let state = dir.appendingPathComponent("state.db").path
            let answer = "Gradient accumulation adds the gradients of several micro batches before one optimizer step, so that a large batch fits in a small memory and the loss stays weighted by tokens. The learning rate schedule advances once per optimizer step, not once per micro batch, and the gradient norm is clipped after the last micro batch of the step has been added."
            let rows: [(String, String, String)] = [
                ("s-0", "What does gradient accumulation do?", answer),
                ("s-1", "What is packing?", "Packing lays samples end to end in one row and masks attention so that no sample sees another."),
                ("s-2", "What does gradient accumulation do?", answer.replacingOccurrences(of: "small memory", with: "little memory")),
                ("s-3", "WHAT does gradient accumulation do?", answer),
            ]
            try rows.map { id, q, a in
                JSONValue.object([("instruction", .string(q)), ("output", .string(a)), ("lineage", .object([("id", .string(id))]))]).compactText
            }.joined(separator: "\n").write(to: input, atomically: true, encoding: .utf8)
            func dedup(_ extra: [String]) throws -> CommandLineTests.Result {
                try CommandLineTests.run(["data", "dedup", "--input", input.path, "--output", output.path, "--state", state, "--method", "minhash"] + extra)
            }
            let first = try dedup(["--threshold", "0.7"])
            #expect(first.status == 0 && first.stdout.contains("kept 2 of 4"), "\(first.stdout)\(first.stderr)")
            let why = try CommandLineTests.run(["data", "why", "s-2", "--state", state])
            #expect(why.status == 0 && why.stdout.contains("dropped") && why.stdout.contains("near copy") && why.stdout.contains("kept in its place: s-0"),
                    "\(why.stdout)\(why.stderr)")
            let kept = try CommandLineTests.run(["data", "why", "s-0", "--state", state, "--json"])
            #expect((try? JSONValue.parse(kept.stdout.trimmingCharacters(in: .newlines)))?["kept"] == .bool(true), "\(kept.stdout)")
            let same = try dedup(["--threshold", "0.7"])
            #expect(same.status == 0 && same.stderr.contains("unchanged since the last run") && same.stdout.contains("kept 2 of 4"), "\(same.stderr)")
            let stricter = try dedup(["--threshold", "0.99"])
            #expect(stricter.status == 0 && !stricter.stderr.contains("unchanged") && stricter.stdout.contains("kept 3 of 4"), "\(stricter.stdout)\(stricter.stderr)")
            let nowKept = try CommandLineTests.run(["data", "why", "s-2", "--state", state])
            #expect(nowKept.stdout.contains("kept") && !nowKept.stdout.contains("dropped"), "\(nowKept.stdout)")
            let unknown = try CommandLineTests.run(["data", "why", "nope", "--state", state])
            #expect(unknown.status != 0 && unknown.stderr.contains("no curation decision about nope"), "\(unknown.stderr)")
            let badKeep = try dedup(["--keep", "best"])
            #expect(badKeep.status != 0 && badKeep.stderr.contains("first, longest or score"), "\(badKeep.stderr)")
        }
    }

    @Test func dedupThenSplitIsStable() async throws {
        try await offThePool {
            let dir = try TrainCommandTests.temporary()
            let input = dir.appendingPathComponent("in.jsonl")
            var lines: [String] = []
            for i in 0..<40 {
                let row = JSONValue.object([("messages", .array([.object([("role", .string("user")), ("content", .string("Question \(i % 30)?"))]),
                                                              .object([("role", .string("assistant")), ("content", .string("Answer \(i % 30).") )])])),
                                            ("lineage", .object([("id", .string("a#\(i)#0"))]))])
                lines.append(row.compactText)
            }
            try lines.joined(separator: "\n").write(to: input, atomically: true, encoding: .utf8)
            let dedup = try CommandLineTests.run(["data", "dedup", "--input", input.path, "--output", dir.appendingPathComponent("d.jsonl").path])
            #expect(dedup.status == 0 && dedup.stdout.contains("kept 30 of 40"), "\(dedup.stdout)\(dedup.stderr)")
            let split = try CommandLineTests.run(["data", "split", "--input", dir.appendingPathComponent("d.jsonl").path, "--output", dir.appendingPathComponent("s.jsonl").path, "--test-fraction", "0.3"])
            #expect(split.status == 0, "\(split.stderr)")
            let train = try String(contentsOf: dir.appendingPathComponent("s.jsonl"), encoding: .utf8).split(separator: "\n")
            let test = try String(contentsOf: dir.appendingPathComponent("s.test.jsonl"), encoding: .utf8).split(separator: "\n")
            #expect(train.count + test.count == 30 && test.count > 0 && train.count > test.count)
            let again = try CommandLineTests.run(["data", "split", "--input", dir.appendingPathComponent("d.jsonl").path, "--output", dir.appendingPathComponent("t.jsonl").path, "--test-fraction", "0.3"])
            #expect(again.status == 0)
            #expect(try String(contentsOf: dir.appendingPathComponent("t.test.jsonl"), encoding: .utf8).split(separator: "\n") == test, "the split is stable")
        }
    }
}
