import ArgumentParser
import Foundation
import RefineryMockLLM

/// `refinery mock-llm`: an OpenAI-compatible dry-run server for tests, demos and rehearsals.
struct MockLLMCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mock-llm",
        abstract: "Run an OpenAI-compatible dry-run server (chat completions, embeddings, /v1/models, /stats) with fault knobs.")

    @Option(help: "Port to listen on (0 picks a free one and prints it).") var port: Int = 8000
    @Option(help: "Address to bind.") var host: String = "127.0.0.1"
    @Option(help: "Latency per request, milliseconds.") var latencyMs: Double = 0
    @Option(help: "Extra random latency up to this many milliseconds.") var jitterMs: Double = 0
    @Option(name: .customLong("rate-429"), help: "Share of requests answered 429 (0…1).") var rate429: Double = 0
    @Option(name: .customLong("rate-500"), help: "Share answered 500.") var rate500: Double = 0
    @Option(help: "Share answered with a malformed JSON reply.") var rateMalformed: Double = 0
    @Option(help: "Share that hang (never answer in time).") var rateHang: Double = 0
    @Option(help: "Seconds a hanging request waits.") var hangSeconds: Double = 600
    @Option(help: "Requests beyond this many in flight get 429.") var maxConcurrent: Int?
    @Option(help: "Require this API key, read from the named environment variable.") var requireKeyEnv: String?
    @Flag(help: "Answer every chat completion with 429 insufficient_quota.") var quotaExhausted = false
    @Option(help: "Seed of the fault dice.") var seed: UInt64 = 1
    @Option(help: "Instruction–answer pairs per reply.") var pairs: Int = 5
    @Flag(help: "Play a position-biased judge: pairwise comparisons always prefer answer A.") var judgePrefersFirst = false

    func validate() throws {
        for (name, share) in [("--rate-429", rate429), ("--rate-500", rate500), ("--rate-malformed", rateMalformed), ("--rate-hang", rateHang)] {
            if !(0...1).contains(share) { throw ValidationError("\(name) must be between 0 and 1") }
        }
        if rate429 + rate500 + rateMalformed + rateHang > 1 { throw ValidationError("the fault shares add up to more than 1") }
    }

    func run() async throws {
        var options = MockLLMOptions()
        options.latency = latencyMs / 1000
        options.jitter = jitterMs / 1000
        options.rateLimitShare = rate429
        options.serverErrorShare = rate500
        options.malformedShare = rateMalformed
        options.hangShare = rateHang
        options.hangSeconds = hangSeconds
        options.maxConcurrent = maxConcurrent
        options.quotaExhausted = quotaExhausted
        options.seed = seed
        options.pairs = pairs
        options.judgePrefersFirst = judgePrefersFirst
        if let variable = requireKeyEnv {
            guard let key = ProcessInfo.processInfo.environment[variable], !key.isEmpty else {
                throw CommandError("--require-key-env \(variable): that environment variable is not set")
            }
            options.requiredKey = key
        }
        let state = MockLLMState(seed: seed)
        try await MockLLMServer.run(host: host, port: port, options: options, state: state) { bound in
            Output.line("mock-llm listening on http://\(host):\(bound)/v1")
        }
    }
}
