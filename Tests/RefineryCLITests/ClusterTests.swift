import Foundation
import GRDB
import RefineryCore
import RefineryModel
import RefineryStore
import RefineryText
import Testing

/// The cluster as users run it: real `refinery` processes (coordinator, workers, mock-llm) on
/// loopback, real SQLite state, SIGKILL for crashes.
@Suite(.serialized) struct ClusterTests {
    typealias Mock = GenerateCrashTests.MockProcess

    /// A `refinery` subprocess whose output goes to a log file.
    final class Background {
        let process = Process()
        let log: URL

        /// Runs `refinery ARGUMENTS`, or `executable PREFIX ARGUMENTS` to run it through another program
        /// such as `ip netns exec NS refinery`.
        init(_ arguments: [String], log: URL, environment: [String: String] = [:], executable: String? = nil, prefix: [String] = []) throws {
            self.log = log
            if let executable {
                process.executableURL = URL(fileURLWithPath: executable)
                process.arguments = prefix + arguments
            } else {
                process.executableURL = try CommandLineTests.executable()
                process.arguments = arguments
            }
            var env = ProcessInfo.processInfo.environment.merging(environment) { $1 }
            env["OPENAI_API_KEY"] = environment["OPENAI_API_KEY"]
            process.environment = env
            _ = FileManager.default.createFile(atPath: log.path, contents: nil)
            let handle = try FileHandle(forWritingTo: log)
            process.standardOutput = handle
            process.standardError = handle
            try process.run()
        }

        var output: String { (try? String(contentsOf: log, encoding: .utf8)) ?? "" }

        /// The address the process prints between `marker` ("… http://") and `end`, as
        /// "http://HOST:PORT": waits up to `seconds`, or until the process exits; nil if it never does.
        func address(after marker: String, before end: String, seconds: Double = 30) -> String? {
            let deadline = Date().addingTimeInterval(seconds)
            while Date() < deadline {
                let log = output
                if let start = log.range(of: marker), let stop = log[start.upperBound...].range(of: end) {
                    return "http://" + log[start.upperBound..<stop.lowerBound]
                }
                if status != nil { return nil }
                Thread.sleep(forTimeInterval: 0.02)
            }
            return nil
        }

        /// The exit status, or nil while it runs.
        var status: Int32? { process.isRunning ? nil : process.terminationStatus }

        func kill9() {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }

        /// Waits up to `seconds` for the process to exit; false if it is still running.
        func wait(seconds: Double) -> Bool {
            let end = Date().addingTimeInterval(seconds)
            while process.isRunning && Date() < end { Thread.sleep(forTimeInterval: 0.05) }
            return !process.isRunning
        }

        deinit { if process.isRunning { kill9() } }
    }

    /// Articles that chunk into two or three pieces each.
    static func writeArticles(_ url: URL, count: Int) throws {
        let rows: [JSONValue] = (0..<count).map { i in
            let body = (0..<40).map { k in "Sentence \(k) of article \(i) explains detail \(i * 97 + k) of the matter at hand." }.joined(separator: " ")
            return .object([("id", .string("art-\(i)")), ("content", .string(body))])
        }
        try JSONValue.object([("artifact_data", .array(rows))]).compactText.write(to: url, atomically: true, encoding: .utf8)
    }

    /// A new temporary folder holding `articles.json` with `count` articles (see `writeArticles`).
    static func folderWithArticles(count: Int) throws -> (dir: URL, articles: URL) {
        let dir = try TrainCommandTests.temporary()
        let articles = dir.appendingPathComponent("articles.json")
        try writeArticles(articles, count: count)
        return (dir, articles)
    }

    /// A run config: generation from `articles` through `mock`, exact dedup, and (optionally) LoRA training on the result.
    static func config(dir: URL, name: String, articles: URL, mock: Mock, train: Bool, steps: Int = 8) throws -> URL {
        let out = dir.appendingPathComponent("\(name)-data.jsonl").path
        var yaml = """
        data:
          articles: \(articles.path)
          state: \(dir.appendingPathComponent("\(name).db").path)
          out: \(out)
          test_fraction: 0.2
        generate:
          base_url: \(mock.base)
          model: mock-model
        curate:
          dedup: exact

        """
        if train {
            yaml += """
            train:
              model: \(TrainCommandTests.llama)
              data: \(out)
              eval_data: \(dir.appendingPathComponent("\(name)-data.test.jsonl").path)
              output: \(dir.appendingPathComponent("\(name)-adapter").path)
              lora_r: 4
              lora_alpha: 8
              lora_dropout: 0.1
              lr: 0.001
              steps: \(steps)
              micro_batch_size: 2
              grad_accum: 2
              max_length: 192
              eval_every: 3
              checkpoint_every: 1

            """
        }
        let url = dir.appendingPathComponent("\(name).yaml")
        try yaml.write(to: url, atomically: true, encoding: .utf8)
        return url
    }

    static func read(_ path: String) -> Data? { FileManager.default.contents(atPath: path) }

    /// A new folder with `articles` articles and the outputs of an uninterrupted `run` over them
    /// (named "ref"), to compare an interrupted run with.
    static func uninterruptedRun(articles count: Int, train: Bool, steps: Int = 8) throws -> (URL, URL) {
        let (dir, articles) = try folderWithArticles(count: count)
        let mock = try Mock(latencyMs: 5)
        let reference = try CommandLineTests.run(["run", "--config", try config(dir: dir, name: "ref", articles: articles, mock: mock, train: train, steps: steps).path,
                                                  "--workers", "2"])
        #expect(reference.status == 0, "\(reference.stderr)")
        return (dir, articles)
    }

    /// In float32 and in bfloat16 (frozen base in bf16, bf16 products), and QLoRA (each worker
    /// quantizes its own copy of the base to NF4), the same bits for one process and 1, 2, 3
    /// workers, and for workers whose pools have other thread counts.
    @Test(arguments: zip(["float32", "bfloat16", "bfloat16"], ["lora", "lora", "qlora"]))
    func oneTwoAndThreeWorkersTrainBitwiseLikeOneProcess(dtype: String, method: String) async throws {
        try await offThePool {
            let dir = try TrainCommandTests.temporary()
            // Samples of very different lengths, so micro-batches differ a lot in size and cost.
            let data = dir.appendingPathComponent("train.jsonl")
            let rows = (0..<14).map { i in
                let answer = (0..<(1 + (i * 7) % 23)).map { "word\($0 * i % 50)" }.joined(separator: " ")
                return JSONValue.object([("messages", .array([
                    .object([("role", .string("user")), ("content", .string("Question \(i)?"))]),
                    .object([("role", .string("assistant")), ("content", .string("Answer \(i): \(answer)."))]),
                ]))]).compactText
            }
            try rows.joined(separator: "\n").write(to: data, atomically: true, encoding: .utf8)
            func config(_ name: String) throws -> URL {
                let yaml = """
                train:
                  model: \(TrainCommandTests.llama)
                  data: \(data.path)
                  output: \(dir.appendingPathComponent(name).path)
                  lora_r: 4
                  lora_alpha: 8
                  lora_dropout: 0.1
                  lr: 0.002
                  scheduler: cosine
                  warmup_steps: 1
                  steps: 5
                  micro_batch_size: 2
                  grad_accum: 3
                  max_length: 96
                  packing: true
                  eval_split: 0.2
                  eval_every: 2
                  checkpoint_every: 2
                  dtype: \(dtype)
                  method: \(method)
                """ + (method == "qlora" ? "\n  nf4_cache: \(dir.appendingPathComponent("nf4").path)" : "")
                let url = dir.appendingPathComponent("\(name).yaml")
                try yaml.write(to: url, atomically: true, encoding: .utf8)
                return url
            }
            // The reference: one process with two BLAS threads (the coordinators below keep that count).
            let single = try CommandLineTests.run(["train", "--config", try config("single").path], environment: ["OPENBLAS_NUM_THREADS": "2"])
            #expect(single.status == 0, "\(single.stderr)")
            #expect(single.stderr.contains("products in \(dtype)"), "the run says which precision it computes in: \(single.stderr)")
            #expect(single.stderr.contains("4-bit NF4") == (method == "qlora"), "the run says when its base is 4-bit: \(single.stderr)")
            #expect(FileManager.default.fileExists(atPath: dir.appendingPathComponent("single/qlora_base.json").path) == (method == "qlora"))
            // QLoRA with `nf4_cache`: the single run writes the 4-bit base, the workers below read it (same bits).
            #expect(single.stderr.contains("wrote the 4-bit projections") == (method == "qlora"), "\(single.stderr)")
            let log = Self.read(dir.appendingPathComponent("single/train_log.jsonl").path)
            let adapter = Self.read(dir.appendingPathComponent("single/adapter_model.safetensors").path)
            #expect(log != nil && adapter != nil)
            #expect((String(data: log ?? Data(), encoding: .utf8) ?? "").contains("eval_loss"))
            for workers in 1...3 {
                let name = "w\(workers)"
                let result = try CommandLineTests.run(["run", "--config", try config(name).path, "--workers", String(workers),
                                                       "--state", dir.appendingPathComponent("\(name).db").path], environment: ["OPENBLAS_NUM_THREADS": "2"])
                #expect(result.status == 0, "\(result.stderr)")
                #expect(Self.read(dir.appendingPathComponent("\(name)/train_log.jsonl").path) == log, "\(workers) workers: train_log.jsonl differs")
                #expect(Self.read(dir.appendingPathComponent("\(name)/adapter_model.safetensors").path) == adapter, "\(workers) workers: adapter differs")
            }
            if method == "qlora" {
                #expect((try? FileManager.default.contentsOfDirectory(atPath: dir.appendingPathComponent("nf4").path))?.count == 1)
            }
            // Workers on "machines" with other BLAS thread counts compute with the run's count: the same bits.
            let endpoint = FreePort.endpoint()
            let coordinator = try Background(["coordinator", "--config", try config("mixed").path, "--state", dir.appendingPathComponent("mixed.db").path,
                                              "--listen", endpoint], log: dir.appendingPathComponent("mixed.log"), environment: ["OPENBLAS_NUM_THREADS": "2"])
            let workers = try ["1", "3"].map { threads in
                try Background(["worker", "--coordinator", endpoint, "--model", TrainCommandTests.llama], log: dir.appendingPathComponent("w\(threads).log"),
                               environment: ["OPENBLAS_NUM_THREADS": threads, "REFINERY_THREADS": threads])
            }
            #expect(coordinator.wait(seconds: 120) && coordinator.status == 0, "\(coordinator.output)")
            // A worker that connects after so short a run has ended waits for a coordinator to come back,
            // as a worker service should; end it here.
            for worker in workers where !worker.wait(seconds: 2) { worker.kill9() }
            #expect(Self.read(dir.appendingPathComponent("mixed/train_log.jsonl").path) == log, "workers with other thread counts: train_log.jsonl differs")

            #expect(Self.read(dir.appendingPathComponent("mixed/adapter_model.safetensors").path) == adapter)
        }
    }

    @Test func aCoordinatorKilledFiveTimesFinishesWithTheSameDatasetAndAdapterAndPaysNoChunkTwice() async throws {
        try await offThePool {
            // 60 steps: a step of the fixture model takes milliseconds, and the training stage must last
            // long enough for two kills at random moments inside it.
            let (dir, articles) = try Self.uninterruptedRun(articles: 40, train: true, steps: 60)

            // 600 ms a call: generation must outlast three restarts with a random wait after each
            // (at 250 ms it could finish before the third kill's moment came).
            let mock = try Mock(latencyMs: 600)
            let config = try Self.config(dir: dir, name: "crash", articles: articles, mock: mock, train: true, steps: 60)
            let state = dir.appendingPathComponent("crash.db").path
            let endpoint = FreePort.endpoint()
            let workers = try (1...2).map { i in
                try Background(["worker", "--coordinator", endpoint, "--slots", "3", "--model", TrainCommandTests.llama, "--name", "crash-w\(i)"],
                               log: dir.appendingPathComponent("worker\(i).log"))
            }
            var kills = 0
            var killedInGeneration = 0, killedInTraining = 0
            var coordinator: Background? = nil
            let deadline = Date().addingTimeInterval(240)
            while Date() < deadline {
                let current = try Background(["coordinator", "--config", config.path, "--listen", endpoint],
                                             log: dir.appendingPathComponent("coordinator\(kills).log"))
                coordinator = current
                if kills >= 5 { break }
                // Wait for a random moment inside the stage this kill aims at.
                let wantTraining = kills >= 3
                let aimEnd = Date().addingTimeInterval(60)
                var fired = false
                Thread.sleep(forTimeInterval: wantTraining ? Double.random(in: 0.1...0.5) : Double.random(in: 0.2...0.8))
                while Date() < aimEnd && current.process.isRunning {
                    let store = try? RunStore(path: state, readOnly: true)
                    let stage = (try? store?.meta("stage")) ?? nil
                    let trainRows = (try? store?.trainLog().count) ?? 0
                    let done = (try? store?.chunkCounts()[.done]) ?? nil
                    if !wantTraining && stage == "generate" && (done ?? 0) > 3 * (kills + 1) {
                        fired = true
                        killedInGeneration += 1
                    } else if wantTraining && stage == "train" && trainRows >= (kills - 2) * 2 {
                        fired = true
                        killedInTraining += 1
                    }
                    if fired { break }
                    Thread.sleep(forTimeInterval: wantTraining ? Double.random(in: 0.01...0.05) : Double.random(in: 0.05...0.3))
                }
                if !fired { break }
                current.kill9()
                kills += 1
            }
            #expect(kills == 5 && killedInGeneration == 3 && killedInTraining == 2,
                    "killed \(killedInGeneration) times in generation and \(killedInTraining) in training")
            #expect(coordinator?.wait(seconds: 180) == true, "the last coordinator finishes")
            #expect(coordinator?.status == 0, "\(coordinator?.output ?? "")")
            for worker in workers { #expect(worker.wait(seconds: 20), "workers exit when the run is over") }

            for suffix in ["-data.jsonl", "-data.test.jsonl", "-adapter/train_log.jsonl", "-adapter/adapter_model.safetensors"] {
                let a = Self.read(dir.appendingPathComponent("ref" + suffix).path), b = Self.read(dir.appendingPathComponent("crash" + suffix).path)
                #expect(a != nil && a == b, "\(suffix) differs from the uninterrupted run's")
            }
            let stats = try mock.stats()
            #expect(stats["prompts_answered_more_than_once"]?.intValue == 0, "a chunk's prompt was answered twice: \(stats.compactText)")
        }
    }

    @Test func aWorkerKilledMidTaskHasItsTasksReleasedAndNothingIsDuplicated() async throws {
        try await offThePool {
            let (dir, articles) = try Self.uninterruptedRun(articles: 24, train: false)

            let mock = try Mock(latencyMs: 400)
            let config = try Self.config(dir: dir, name: "kw", articles: articles, mock: mock, train: false)
            let endpoint = FreePort.endpoint()
            let coordinator = try Background(["coordinator", "--config", config.path, "--listen", endpoint], log: dir.appendingPathComponent("c.log"))
            let victim = try Background(["worker", "--coordinator", endpoint, "--slots", "4", "--name", "victim"], log: dir.appendingPathComponent("v.log"))
            let survivor = try Background(["worker", "--coordinator", endpoint, "--slots", "2", "--name", "survivor"], log: dir.appendingPathComponent("s.log"))
            let state = dir.appendingPathComponent("kw.db").path
            let end = Date().addingTimeInterval(60)
            while Date() < end {
                Thread.sleep(forTimeInterval: 0.1)
                if let store = try? RunStore(path: state, readOnly: true), let workers = try? store.workers(),
                   workers.first(where: { $0.id == "victim" }).map({ $0.tasksDone >= 2 }) == true { break }
            }
            victim.kill9()  // with calls in flight: 4 slots, 400 ms each
            #expect(coordinator.wait(seconds: 120), "the run completes without the victim")
            #expect(coordinator.status == 0, "\(coordinator.output)")
            #expect(coordinator.output.contains("worker victim lost"), "\(coordinator.output)")
            #expect(survivor.wait(seconds: 20))
            #expect(Self.read(dir.appendingPathComponent("kw-data.jsonl").path) == Self.read(dir.appendingPathComponent("ref-data.jsonl").path))
            let store = try RunStore(path: state, readOnly: true)
            let chunks = try store.allChunks()
            #expect(chunks.allSatisfy { $0.status == .done })
            #expect(try store.samples().count == chunks.count * 5, "exactly five pairs per chunk, none twice")
            // `status` tells the story from the state file.
            let status = try CommandLineTests.run(["status", "--state", state, "--json"])
            #expect(status.status == 0, "\(status.stderr)")
            let report = try JSONValue.parse(status.stdout)
            #expect(report["stage"]?.stringValue == "done")
            #expect(report["chunks"]?["done"]?.intValue == chunks.count && report["chunks"]?["pending"]?.intValue == 0)
            let workers = report["workers"]?.arrayValue ?? []
            #expect(Set(workers.compactMap { $0["id"]?.stringValue }) == ["victim", "survivor"])
            let done = workers.compactMap { $0["tasks_done"]?.intValue }.reduce(0, +)
            #expect(done == chunks.count, "every chunk counted once, for the worker whose answer was stored")
            let text = try CommandLineTests.run(["status", "--state", state])
            #expect(text.stdout.contains("stage      done") && text.stdout.contains("victim"), "\(text.stdout)")
        }
    }

    @Test func curveAdmitsOnlyAllowlistedWorkersAndTheKeyTravelsEncryptedAndIsStoredNowhere() async throws {
        try await offThePool {
            let dir = try TrainCommandTests.temporary()
            var publicKeys: [String: String] = [:]
            for name in ["coordinator", "good", "bad"] {
                let result = try CommandLineTests.run(["keys", "generate", "--out", dir.appendingPathComponent("\(name).key").path])
                #expect(result.status == 0, "\(result.stderr)")
                publicKeys[name] = result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
                try result.stdout.write(to: dir.appendingPathComponent("\(name).pub"), atomically: true, encoding: .utf8)
            }
            try "\(publicKeys["good"] ?? "")\n".write(to: dir.appendingPathComponent("allow.txt"), atomically: true, encoding: .utf8)
            let secret = "sk-curve-only-\(UUID().uuidString)"
            let articles = dir.appendingPathComponent("articles.json")
            try Self.writeArticles(articles, count: 6)
            let mock = try Mock(latencyMs: 20, extra: ["--require-key-env", "MOCK_KEY"], environment: ["MOCK_KEY": secret])
            let config = try Self.config(dir: dir, name: "sec", articles: articles, mock: mock, train: false)
            let endpoint = FreePort.endpoint()
            let coordinator = try Background(["coordinator", "--config", config.path, "--listen", endpoint,
                                              "--keys", dir.appendingPathComponent("coordinator.key").path,
                                              "--allow", dir.appendingPathComponent("allow.txt").path],
                                             log: dir.appendingPathComponent("c.log"), environment: ["OPENAI_API_KEY": secret])
            // The intruder's key is not allowlisted: refused at the handshake, it gets nothing.
            let bad = try Background(["worker", "--coordinator", endpoint, "--keys", dir.appendingPathComponent("bad.key").path,
                                      "--server-key", dir.appendingPathComponent("coordinator.pub").path, "--name", "intruder"], log: dir.appendingPathComponent("bad.log"))
            #expect(bad.wait(seconds: 30), "a refused worker exits")
            #expect(bad.status.map { $0 != 0 } == true)
            #expect(bad.output.contains("refused this worker's key"), "\(bad.output)")
            // The allowlisted worker has no key in its environment: it can only have it from the coordinator, over CURVE.
            let good = try Background(["worker", "--coordinator", endpoint, "--keys", dir.appendingPathComponent("good.key").path,
                                       "--server-key=\(publicKeys["coordinator"] ?? "")", "--name", "friend"], log: dir.appendingPathComponent("good.log"))
            #expect(coordinator.wait(seconds: 60))
            #expect(coordinator.status == 0, "\(coordinator.output)")
            #expect(good.wait(seconds: 20))
            let state = dir.appendingPathComponent("sec.db").path
            let store = try RunStore(path: state, readOnly: true)
            #expect(try store.workers().map(\.id) == ["friend"], "the intruder never became a worker")
            #expect(try store.chunkCounts()[.done] == store.allChunks().count)
            let status = try CommandLineTests.run(["status", "--state", state, "--json"])
            #expect(status.status == 0)
            var places = [coordinator.output, bad.output, good.output, status.stdout, status.stderr]
            for suffix in ["", "-wal", "-shm"] {
                if let data = Self.read(state + suffix) { places.append(String(decoding: data, as: UTF8.self)) }
            }
            for text in places { #expect(!text.contains(secret), "the API key leaked") }
        }
    }

    @Test func badSetupsAreRefusedWithReasons() async throws {
        try await offThePool {
            let dir = try TrainCommandTests.temporary()
            let articles = dir.appendingPathComponent("articles.json")
            try Self.writeArticles(articles, count: 2)
            let mock = try Mock(latencyMs: 0)
            let config = try Self.config(dir: dir, name: "bad", articles: articles, mock: mock, train: false)
            // A foreign SQLite file is refused and left as it was.
            let foreign = dir.appendingPathComponent("foreign.db").path
            let sqlite = try CommandLineTests.run(["status", "--state", foreign])  // absent: a clear error
            #expect(sqlite.status != 0 && sqlite.stderr.contains("no state file"))
            do {
                let other = try DatabaseQueue(path: foreign)
                try other.write { try $0.execute(sql: "CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)") }
                try other.close()
            }
            let before = Self.read(foreign)
            let refused = try CommandLineTests.run(["coordinator", "--config", config.path, "--state", foreign, "--listen", "tcp://127.0.0.1:0"])
            #expect(refused.status != 0 && refused.stderr.contains("another application"), "\(refused.stderr)")
            #expect(Self.read(foreign) == before)
            // A corrupt file too.
            let corrupt = dir.appendingPathComponent("corrupt.db").path
            try Data(repeating: 0x42, count: 8192).write(to: URL(fileURLWithPath: corrupt))
            let broken = try CommandLineTests.run(["coordinator", "--config", config.path, "--state", corrupt, "--listen", "tcp://127.0.0.1:0"])
            #expect(broken.status != 0 && broken.stderr.contains("not a readable SQLite database"), "\(broken.stderr)")
            #expect(Self.read(corrupt) == Data(repeating: 0x42, count: 8192))
            // Listening beyond loopback without keys needs --insecure.
            let open = try CommandLineTests.run(["coordinator", "--config", config.path, "--listen", "tcp://*:0"])
            #expect(open.status != 0 && open.stderr.contains("--insecure"), "\(open.stderr)")
            // --keys without an allowlist has no unauthenticated fallback.
            _ = try CommandLineTests.run(["keys", "generate", "--out", dir.appendingPathComponent("c.key").path])
            let noAllow = try CommandLineTests.run(["coordinator", "--config", config.path, "--keys", dir.appendingPathComponent("c.key").path])
            #expect(noAllow.status != 0 && noAllow.stderr.contains("--allow"), "\(noAllow.stderr)")
        }
    }
}

/// `refinery demo`, the README's first command, end to end.
@Suite struct DemoTests {
    @Test func theDemoRunsThePipelineOfflineAndNamesWhatItWrote() async throws {
        try await offThePool {
            let out = try TrainCommandTests.temporary().appendingPathComponent("demo")
            let root = CommandLineTests.packageRoot
            let result = try CommandLineTests.run(["demo", "--out", out.path, "--articles", root.appendingPathComponent("examples/articles.json").path,
                                                   "--model", root.appendingPathComponent("examples/tiny-llama").path, "--steps", "12", "--latency-ms", "20",
                                                   "--reward-model", root.appendingPathComponent("examples/tiny-reward").path])
            #expect(result.status == 0, "\(result.stderr)")
            // What each curation stage kept, in order; the LLM stages' calls.
            for (position, stage) in ["filter", "dedup", "judge", "evolve", "score"].enumerated() {
                #expect(result.stdout.contains("\(position + 1). \(stage)"), "the summary lists stage \(stage): \(result.stdout)")
            }
            #expect(result.stdout.contains("evolved samples added") && result.stdout.contains("LLM calls of curation: evolve"), "\(result.stdout)")
            // The workers' calls of each kind say what they are.
            #expect(result.stderr.contains("round 1 rewrites:") && result.stderr.contains("round 1 answers:"), "\(result.stderr)")
            for name in ["run.yaml", "state.db", "dataset.jsonl", "dataset.test.jsonl", "adapter/adapter_model.safetensors",
                         "adapter/adapter_config.json", "adapter/train_log.jsonl", "merged/model.safetensors"] {
                let path = out.appendingPathComponent(name).path
                #expect(FileManager.default.fileExists(atPath: path), "\(name) is missing")
                #expect(result.stdout.contains(path) || name == "merged/model.safetensors" && result.stdout.contains("merged"), "the summary names \(name)")
            }
            #expect(result.stdout.contains("12 chunks done, 0 failed"), "\(result.stdout)")
            let log = try String(contentsOf: out.appendingPathComponent("adapter/train_log.jsonl"), encoding: .utf8)
            #expect(log.split(separator: "\n").filter { !$0.contains("eval_loss") }.count == 12)
            // Run twice: the demo starts over rather than tripping on its previous outputs.
            let again = try CommandLineTests.run(["demo", "--out", out.path, "--articles", root.appendingPathComponent("examples/articles.json").path,
                                                  "--model", root.appendingPathComponent("examples/tiny-llama").path, "--steps", "3", "--latency-ms", "0",
                                                  "--reward-model", root.appendingPathComponent("examples/tiny-reward").path])
            #expect(again.status == 0, "\(again.stderr)")
        }
    }
}

/// `examples/curation.yaml`, as its header says to run it: every stage against mock-llm, then training.
@Suite struct CurationExampleTests {
    @Test func theCurationExampleRunsEveryStageEndToEnd() async throws {
        try await offThePool {
            let dir = try TrainCommandTests.temporary()
            let root = CommandLineTests.packageRoot
            let mock = try GenerateCrashTests.MockProcess(latencyMs: 0)
            var yaml = try String(contentsOf: root.appendingPathComponent("examples/curation.yaml"), encoding: .utf8)
            yaml = yaml.replacingOccurrences(of: "http://127.0.0.1:8000/v1", with: mock.base)
                .replacingOccurrences(of: "runs/curation", with: dir.appendingPathComponent("run").path)
                .replacingOccurrences(of: "examples/", with: root.appendingPathComponent("examples").path + "/")
            let config = dir.appendingPathComponent("curation.yaml")
            try yaml.write(to: config, atomically: true, encoding: .utf8)
            let result = try CommandLineTests.run(["run", "--config", config.path, "--workers", "2"])
            #expect(result.status == 0, "\(result.stderr)")
            for stage in ["filter", "dedup", "judge", "evolve", "score"] {
                #expect(result.stderr.contains("[curate] \(stage): kept"), "stage \(stage) reports what it kept: \(result.stderr)")
            }
            #expect(result.stderr.contains("judge-a vs judge-b:"), "the jury's agreement is reported")
            #expect(result.stderr.contains("[train] step 20/20"), "\(result.stderr)")
            let rows = try String(contentsOf: dir.appendingPathComponent("run/dataset.jsonl"), encoding: .utf8).split(separator: "\n")
            #expect(rows.contains { $0.contains("\"evolved_from\"") }, "evolved samples are in the trained dataset")
            #expect(try mock.stats()["prompts_answered_more_than_once"]?.intValue == 0)
        }
    }
}

/// `refinery worker --fetch-model`: a worker without the model downloads it from the coordinator.
@Suite struct FetchModelTests {
    @Test func aWorkerFetchesTheModelAndTrainsTheSameBits() async throws {
        try await offThePool {
            let dir = try TrainCommandTests.temporary()
            let yaml = """
            train:
              model: \(TrainCommandTests.llama)
              data: \(TrainCommandTests.trainData)
              output: \(dir.appendingPathComponent("out").path)
              lora_r: 4
              steps: 3
              lr: 0.001
              max_length: 64
            """
            let config = dir.appendingPathComponent("t.yaml")
            try yaml.write(to: config, atomically: true, encoding: .utf8)
            let single = try CommandLineTests.run(["train", "--config", config.path, "--output", dir.appendingPathComponent("single").path])
            #expect(single.status == 0, "\(single.stderr)")
            let endpoint = FreePort.endpoint()
            let coordinator = try ClusterTests.Background(["coordinator", "--config", config.path, "--state", dir.appendingPathComponent("s.db").path,
                                                           "--listen", endpoint], log: dir.appendingPathComponent("c.log"))
            let fetched = dir.appendingPathComponent("fetched")
            let worker = try ClusterTests.Background(["worker", "--coordinator", endpoint, "--fetch-model", fetched.path], log: dir.appendingPathComponent("w.log"))
            #expect(coordinator.wait(seconds: 60))
            #expect(coordinator.status == 0, "\(coordinator.output)")
            #expect(worker.wait(seconds: 20))
            for name in try FileManager.default.contentsOfDirectory(atPath: TrainCommandTests.llama) where name.hasSuffix(".safetensors") || name == "config.json" {
                #expect(ClusterTests.read(fetched.appendingPathComponent(name).path) == ClusterTests.read(TrainCommandTests.llama + "/" + name), "\(name) fetched intact")
            }
            #expect(ClusterTests.read(dir.appendingPathComponent("out/adapter_model.safetensors").path)
                    == ClusterTests.read(dir.appendingPathComponent("single/adapter_model.safetensors").path))
        }
    }
}

/// Full fine-tuning through the cluster: every weight travels to the workers and back, and the
/// model folder written at the end is the one a single process writes (BF16 base, tied embeddings),
/// with float32 or 8-bit AdamW moments (kept by the coordinator).
@Suite struct ClusterFullFineTuningTests {
    @Test(arguments: ["adamw", "adamw-8bit"])
    func twoWorkersWriteTheSameModelFolderAsOneProcess(optimizer: String) async throws {
        try await offThePool {
            let dir = try TrainCommandTests.temporary()
            let yaml = """
            train:
              model: \(TrainCommandTests.qwen)
              data: \(TrainCommandTests.trainData)
              output: \(dir.appendingPathComponent("cluster").path)
              method: full
              optimizer: \(optimizer)
              steps: 3
              grad_accum: 2
              lr: 0.0001
            """
            let config = dir.appendingPathComponent("full.yaml")
            try yaml.write(to: config, atomically: true, encoding: .utf8)
            let environment = ["OPENBLAS_NUM_THREADS": "2"]
            let cluster = try CommandLineTests.run(["run", "--config", config.path, "--workers", "2", "--state", dir.appendingPathComponent("s.db").path],
                                                   environment: environment)
            #expect(cluster.status == 0, "\(cluster.stderr)")
            let single = try CommandLineTests.run(["train", "--config", config.path, "--output", dir.appendingPathComponent("single").path], environment: environment)
            #expect(single.status == 0, "\(single.stderr)")
            for name in ["model.safetensors", "train_log.jsonl", "config.json"] {
                let a = ClusterTests.read(dir.appendingPathComponent("cluster/\(name)").path)
                #expect(a != nil && a == ClusterTests.read(dir.appendingPathComponent("single/\(name)").path), "\(name) differs")
            }
            // The checkpoint holds 8-bit moments exactly when asked for (U8 codes in its optimizer file).
            let moments = try SafetensorsFile(path: dir.appendingPathComponent("single/checkpoints/step-000003/optimizer.safetensors").path)
            #expect(moments.entries.values.contains { $0.dtype == .u8 } == (optimizer == "adamw-8bit"), "\(moments.names.prefix(6))")
        }
    }
}

/// A refused API key stops the whole cluster with the reason; the same command with the right key
/// then finishes the run.
@Suite struct ClusterStopTests {
    @Test func aRefusedKeyStopsEveryProcessAndTheRunResumesWithTheRightOne() async throws {
        try await offThePool {
            let dir = try TrainCommandTests.temporary()
            let articles = dir.appendingPathComponent("articles.json")
            try ClusterTests.writeArticles(articles, count: 8)
            let good = "sk-good-\(UUID().uuidString)", bad = "sk-bad-\(UUID().uuidString)"
            let mock = try ClusterTests.Mock(latencyMs: 10, extra: ["--require-key-env", "MOCK_KEY"], environment: ["MOCK_KEY": good])
            let config = try ClusterTests.config(dir: dir, name: "stop", articles: articles, mock: mock, train: false)
            let state = dir.appendingPathComponent("stop.db").path
            let refused = try CommandLineTests.run(["run", "--config", config.path, "--workers", "2"], environment: ["OPENAI_API_KEY": bad])
            #expect(refused.status != 0)
            #expect(refused.stderr.contains("API key was refused"), "\(refused.stderr)")
            #expect(!(refused.stdout + refused.stderr).contains(bad))
            let stopped = try JSONValue.parse(try CommandLineTests.run(["status", "--state", state, "--json"]).stdout)
            #expect(stopped["stage"]?.stringValue == "stopped")
            #expect(stopped["stopped_reason"]?.stringValue?.contains("API key was refused") == true)
            #expect(stopped["chunks"]?["done"]?.intValue == 0)
            let resumed = try CommandLineTests.run(["run", "--config", config.path, "--workers", "2"], environment: ["OPENAI_API_KEY": good])
            #expect(resumed.status == 0, "\(resumed.stderr)")
            let done = try JSONValue.parse(try CommandLineTests.run(["status", "--state", state, "--json"]).stdout)
            #expect(done["stage"]?.stringValue == "done" && done["stopped_reason"]?.isNull == true)
            #expect(done["chunks"]?["done"]?.intValue == done["chunks"]?["total"]?.intValue)
            for suffix in ["", "-wal", "-shm"] {
                if let data = ClusterTests.read(state + suffix) {
                    #expect(data.range(of: Data(bad.utf8)) == nil && data.range(of: Data(good.utf8)) == nil)
                }
            }
        }
    }
}
