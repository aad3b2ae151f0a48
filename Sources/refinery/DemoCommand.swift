import ArgumentParser
import Foundation
import RefineryMockLLM
import RefineryPipeline

/// `refinery demo`: the whole pipeline offline on bundled samples — mock LLM, a coordinator and
/// workers on loopback, generation, curation, distributed LoRA training, export.
struct DemoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Run the whole pipeline offline on the bundled samples: generate, curate (filter, dedup, LLM jury, Evol-Instruct, reward model), train (LoRA, distributed), export.")

    @Option(help: "Folder for everything the demo writes (replaced on each run).") var out: String = "demo-run"
    @Option(help: "Articles to turn into instruction data.") var articles: String = "examples/articles.json"
    @Option(help: "Base model folder (the bundled one has random weights: its output is gibberish by design).") var model: String = "examples/tiny-llama"
    @Option(help: "Local reward model of the score stage (the bundled one has random weights).") var rewardModel: String = "examples/tiny-reward"
    @Option(help: "Worker processes.") var workers: Int = 2
    @Option(help: "Optimizer steps.") var steps: Int = 40
    @Option(help: "Latency of the mock LLM, milliseconds.") var latencyMs: Double = 100

    func run() async throws {
        let demo: DemoRun
        do { demo = try DemoRun(out: out, articles: articles, model: model, reward: rewardModel, workers: workers, steps: steps) } catch let error as PipelineError {
            throw CommandError(error.message)
        }
        let started = Date()

        // 1. The mock LLM, in this process.
        var options = MockLLMOptions()
        options.latency = latencyMs / 1000
        options.seed = 1
        let (baseURL, state, server) = try await MockLLMServer.start(options)
        defer { server.cancel() }
        guard let port = URL(string: baseURL)?.port else { throw CommandError("the mock LLM did not start") }
        Output.progress("[demo] mock LLM on http://127.0.0.1:\(port)/v1 (\(Int(latencyMs)) ms per call)\n")

        // 2. A real run config, kept for the user to read and reuse; 3. the run, on its own thread
        // (the coordinator blocks), with worker processes.
        let written: [String] = try await withCheckedThrowingContinuation { continuation in
            let thread = Thread {
                do {
                    let config = try demo.writeConfig(mockPort: port)
                    continuation.resume(returning: try demo.run(config: config, report: Output.progress))
                } catch {
                    continuation.resume(throwing: CommandError("\(error)"))
                }
            }
            thread.stackSize = 8 << 20
            thread.start()
        }

        // 4. The summary.
        Output.line(try demo.summary(written: written, seconds: Date().timeIntervalSince(started), repeatedAnswers: await state.repeatedAnswers))
    }
}
