import Foundation
import RefineryCore
import RefineryStore

/// `refinery demo`'s run: a run config against the mock LLM on loopback, a coordinator here
/// and worker processes, then a summary of what was written. The caller starts the mock LLM.
public struct DemoRun: Sendable {
    /// Files and folders of a previous demo run in `out`, removed before a new one.
    public static let outputs = ["run.yaml", "state.db", "state.db-wal", "state.db-shm", "state.db.lock", "dataset.jsonl", "dataset.test.jsonl", "adapter", "merged"]

    public let out: URL
    public let articles: String
    public let model: String
    /// The local reward model of the `score` stage.
    public let reward: String
    public let workers: Int
    public let steps: Int

    /// Checks the inputs and empties `out` of an earlier demo's files.
    public init(out: String, articles: String, model: String, reward: String = "examples/tiny-reward", workers: Int, steps: Int) throws {
        let fm = FileManager.default
        for (flag, path) in [("--articles", articles), ("--model", model), ("--reward-model", reward)] where !fm.fileExists(atPath: path) {
            throw PipelineError("\(path) not found: run the demo from the repository root, or pass \(flag)")
        }
        guard workers >= 1, steps >= 1 else { throw PipelineError("--workers and --steps must be at least 1") }
        self.out = URL(fileURLWithPath: out)
        self.articles = URL(fileURLWithPath: articles).standardizedFileURL.path
        self.model = URL(fileURLWithPath: model).standardizedFileURL.path
        self.reward = URL(fileURLWithPath: reward).standardizedFileURL.path
        self.workers = workers
        self.steps = steps
        do { try fm.createDirectory(at: self.out, withIntermediateDirectories: true) } catch {
            throw PipelineError("cannot create \(out): \(error.localizedDescription)")
        }
        for name in Self.outputs { try? fm.removeItem(at: self.out.appendingPathComponent(name)) }
    }

    private func path(_ name: String) -> String { out.appendingPathComponent(name).standardizedFileURL.path }

    /// Writes `run.yaml` (kept for the user to read and reuse) for the mock LLM on `port`.
    public func writeConfig(mockPort port: Int) throws -> String {
        let yaml = """
        # Written by `refinery demo`: the whole pipeline against the mock LLM on loopback.
        data:
          articles: \(articles)
          state: \(path("state.db"))
          out: \(path("dataset.jsonl"))
          format: openai
          test_fraction: 0.1
        generate:
          base_url: http://127.0.0.1:\(port)/v1
          model: mock-model
          slots: 4
        curate:                 # on the generated train split, in this order
          - filter: {min_answer_chars: 20}
          - dedup: exact
          - judge:              # a jury of two (mock) models, 1-4 rubric
              base_url: http://127.0.0.1:\(port)/v1
              judges: [{model: judge-a}, {model: judge-b}]
              aggregate: mean
              min_score: 2.5
          - evolve: {base_url: http://127.0.0.1:\(port)/v1, model: mock-model, rounds: 1}
          - score: {model: \(reward), top_fraction: 0.9}
        train:
          model: \(model)
          data: \(path("dataset.jsonl"))
          eval_data: \(path("dataset.test.jsonl"))
          output: \(path("adapter"))
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
          merged: \(path("merged"))

        """
        let config = path("run.yaml")
        do { try yaml.write(toFile: config, atomically: true, encoding: .utf8) } catch {
            throw PipelineError("cannot write \(config): \(error.localizedDescription)")
        }
        return config
    }

    /// The cluster run of `config` with `workers` local worker processes; blocks until it ends.
    public func run(config: String, report: @escaping ProgressReport) throws -> [String] {
        let pipeline = try ClusterPipeline(config: try RunConfig(path: config), statePath: nil, listen: "tcp://127.0.0.1:*", security: nil, report: report)
        let processes = LocalWorkers()
        do {
            let files = try pipeline.run(stopCheck: processes.allExited) { endpoint in
                try processes.start(count: workers, endpoint: endpoint, slots: 4, model: model, quiet: true)
            }
            processes.waitOrStop(seconds: 10)
            return files
        } catch {
            processes.stop()
            throw error
        }
    }

    /// The closing summary: what ran, how it went, what was written.
    public func summary(written: [String], seconds: Double, repeatedAnswers: Int) throws -> String {
        let store = try RunStore(path: path("state.db"), readOnly: true)
        let counts = try store.chunkCounts()
        let usage = try store.totalUsage()
        let log = try store.trainLog()
        let last = log.last { !$0.contains("eval_loss") }.flatMap { try? JSONValue.parse($0) }
        let firstRow = log.first { !$0.contains("eval_loss") }.flatMap { try? JSONValue.parse($0) }
        let eval = log.last { $0.contains("eval_loss") }.flatMap { try? JSONValue.parse($0) }
        func lines(_ name: String) -> Int { ((try? String(contentsOfFile: path(name), encoding: .utf8)) ?? "").split(separator: "\n").count }
        var summary = ["", "Refinery demo finished in \(String(format: "%.1f", seconds)) s with \(workers) workers"]
        summary.append("  generation: \(counts[.done] ?? 0) chunks done, \(counts[.failed] ?? 0) failed, \(usage.requests) LLM requests (\(repeatedAnswers) prompts answered twice)")
        summary.append("  curation:   (on the train split; `refinery data why ID --state \(path("state.db"))` tells one sample's story)")
        for stage in try store.curationStages() {
            var line = "    \(stage.position + 1). \(stage.name.padding(toLength: 8, withPad: " ", startingAt: 0)) kept \(stage.kept) of \(stage.kept + stage.dropped)"
            let rows = try store.curationDecisions(pipeline: stage.pipeline, position: stage.position).filter(\.kept)
                .map { $0.outputRows.flatMap(CurationPlan.rows(fromJSON:))?.count ?? 1 }.reduce(0, +)
            if rows != stage.kept { line += " → \(rows) rows (\(rows > stage.kept ? "evolved samples added" : "rewritten"))" }
            summary.append(line)
        }
        let calls = try store.callTotals()
        if !calls.isEmpty {
            let byPurpose = Dictionary(calls.map { ($0.purpose, $0.calls) }, uniquingKeysWith: +).sorted { $0.key < $1.key }
            summary.append("    LLM calls of curation: " + byPurpose.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
        }
        summary.append("  dataset:    \(lines("dataset.jsonl")) train samples after curation, \(lines("dataset.test.jsonl")) test samples")
        if let firstRow, let last {
            summary.append(String(format: "  training:   %d LoRA steps, loss %.4f → %.4f", last["step"]?.intValue ?? 0,
                                  firstRow["loss"]?.doubleValue ?? .nan, last["loss"]?.doubleValue ?? .nan)
                           + (eval?["eval_loss"]?.doubleValue.map { String(format: ", eval loss %.4f", $0) } ?? ""))
        }
        summary.append("  wrote:")
        for file in [path("run.yaml"), path("state.db")] + written { summary.append("    \(file)") }
        summary.append("  next: refinery status --state \(path("state.db"))")
        return summary.joined(separator: "\n")
    }
}
