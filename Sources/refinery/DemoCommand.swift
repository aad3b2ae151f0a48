import ArgumentParser
import Foundation
import RefineryLLM
import RefineryStore
import RefineryText

/// `refinery demo`: the whole pipeline offline on bundled samples — mock LLM, a coordinator and
/// workers on loopback, generation, curation, distributed LoRA training, export.
struct DemoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Run the whole pipeline offline on the bundled samples: generate, curate, train (LoRA, distributed), export.")

    @Option(help: "Folder for everything the demo writes (replaced on each run).") var out: String = "demo-run"
    @Option(help: "Articles to turn into instruction data.") var articles: String = "examples/articles.json"
    @Option(help: "Base model folder (the bundled one has random weights: its output is gibberish by design).") var model: String = "examples/tiny-llama"
    @Option(help: "Worker processes.") var workers: Int = 2
    @Option(help: "Optimizer steps.") var steps: Int = 40
    @Option(help: "Latency of the mock LLM, milliseconds.") var latencyMs: Double = 100

    /// Files and folders of a previous demo run in `out`, removed before a new one.
    static let outputs = ["run.yaml", "state.db", "state.db-wal", "state.db-shm", "state.db.lock", "dataset.jsonl", "dataset.test.jsonl", "adapter", "merged"]

    func run() async throws {
        let fm = FileManager.default
        for (flag, path) in [("--articles", articles), ("--model", model)] where !fm.fileExists(atPath: path) {
            throw CommandError("\(path) not found: run the demo from the repository root, or pass \(flag)")
        }
        guard workers >= 1, steps >= 1 else { throw CommandError("--workers and --steps must be at least 1") }
        let outURL = URL(fileURLWithPath: out)
        do { try fm.createDirectory(at: outURL, withIntermediateDirectories: true) } catch {
            throw CommandError("cannot create \(out): \(error.localizedDescription)")
        }
        for name in Self.outputs { try? fm.removeItem(at: outURL.appendingPathComponent(name)) }
        let started = Date()

        // 1. The mock LLM, in this process.
        var options = MockLLMOptions()
        options.latency = latencyMs / 1000
        let state = MockLLMState(seed: 1)
        let (ports, portSink) = AsyncStream.makeStream(of: Int.self)
        let server = Task { try await MockLLMServer.run(port: 0, options: options, state: state, quiet: true) { portSink.yield($0) } }
        defer { server.cancel() }
        var iterator = ports.makeAsyncIterator()
        guard let port = await iterator.next() else { throw CommandError("the mock LLM did not start") }
        Output.progress("[demo] mock LLM on http://127.0.0.1:\(port)/v1 (\(Int(latencyMs)) ms per call)\n")

        // 2. A real run config, kept for the user to read and reuse.
        let absolute = { (path: String) in URL(fileURLWithPath: path).standardizedFileURL.path }
        let config = outURL.appendingPathComponent("run.yaml")
        let yaml = """
        # Written by `refinery demo`: the whole pipeline against the mock LLM on loopback.
        data:
          articles: \(absolute(articles))
          state: \(absolute(outURL.appendingPathComponent("state.db").path))
          out: \(absolute(outURL.appendingPathComponent("dataset.jsonl").path))
          format: openai
          test_fraction: 0.1
        generate:
          base_url: http://127.0.0.1:\(port)/v1
          model: mock-model
          slots: 4
        curate:
          dedup: exact
        train:
          model: \(absolute(model))
          data: \(absolute(outURL.appendingPathComponent("dataset.jsonl").path))
          eval_data: \(absolute(outURL.appendingPathComponent("dataset.test.jsonl").path))
          output: \(absolute(outURL.appendingPathComponent("adapter").path))
          method: lora
          lora_r: 8
          lora_alpha: 16
          targets: all-linear
          lr: 0.002
          scheduler: cosine
          warmup_steps: 4
          steps: \(steps)
          micro_batch_size: 2
          grad_accum: 2
          max_length: 256
          packing: true
          eval_every: 10
          checkpoint_every: 10
        export:
          merged: \(absolute(outURL.appendingPathComponent("merged").path))

        """
        do { try yaml.write(to: config, atomically: true, encoding: .utf8) } catch {
            throw CommandError("cannot write \(config.path): \(error.localizedDescription)")
        }

        // 3. Coordinator here, workers as processes; the blocking run gets its own thread.
        let cluster = ClusterRun(configPath: config.path, statePath: nil, listen: "tcp://127.0.0.1:*", security: nil)
        let workerCount = workers
        let modelPath = absolute(model)
        let written: [String] = try await withCheckedThrowingContinuation { continuation in
            let thread = Thread {
                let processes = LocalWorkers()
                do {
                    let files = try cluster.run(stopCheck: processes.allExited) { endpoint in
                        try processes.start(count: workerCount, endpoint: endpoint, slots: 4, model: modelPath, quiet: true)
                    }
                    processes.waitOrStop(seconds: 10)
                    continuation.resume(returning: files)
                } catch {
                    processes.stop()
                    continuation.resume(throwing: error)
                }
            }
            thread.stackSize = 8 << 20
            thread.start()
        }

        // 4. The summary.
        let store = try RunStore(path: outURL.appendingPathComponent("state.db").path, readOnly: true)
        let counts = try store.chunkCounts()
        let usage = try store.totalUsage()
        let log = try store.trainLog()
        let last = log.last { !$0.contains("eval_loss") }.flatMap { try? JSONValue.parse($0) }
        let firstRow = log.first { !$0.contains("eval_loss") }.flatMap { try? JSONValue.parse($0) }
        let eval = log.last { $0.contains("eval_loss") }.flatMap { try? JSONValue.parse($0) }
        func lines(_ path: String) -> Int { ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").split(separator: "\n").count }
        let repeated = await state.repeatedAnswers
        var summary = ["", "Refinery demo finished in \(String(format: "%.1f", Date().timeIntervalSince(started))) s with \(workers) workers"]
        summary.append("  generation: \(counts[.done] ?? 0) chunks done, \(counts[.failed] ?? 0) failed, \(usage.requests) LLM requests (\(repeated) prompts answered twice)")
        summary.append("  dataset:    \(lines(outURL.appendingPathComponent("dataset.jsonl").path)) train samples after exact dedup, \(lines(outURL.appendingPathComponent("dataset.test.jsonl").path)) test samples")
        if let firstRow, let last {
            summary.append(String(format: "  training:   %d LoRA steps, loss %.4f → %.4f", last["step"]?.intValue ?? 0,
                                  firstRow["loss"]?.doubleValue ?? .nan, last["loss"]?.doubleValue ?? .nan)
                           + (eval?["eval_loss"]?.doubleValue.map { String(format: ", eval loss %.4f", $0) } ?? ""))
        }
        summary.append("  wrote:")
        for path in [config.path, outURL.appendingPathComponent("state.db").path] + written { summary.append("    \(path)") }
        summary.append("  next: refinery status --state \(outURL.appendingPathComponent("state.db").path)")
        Output.line(summary.joined(separator: "\n"))
    }
}
