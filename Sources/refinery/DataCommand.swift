import ArgumentParser
import Foundation
import RefineryData
import RefineryLLM
import RefineryStore
import RefineryText

/// Lets a progress line through at most four times a second.
final class ProgressThrottle: @unchecked Sendable {
    private let lock = NSLock()
    private var last = 0.0

    func due(final: Bool) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        let now = Date().timeIntervalSince1970
        if final || now - last >= 0.25 { last = now; return true }
        return false
    }
}

/// `refinery data …`: the data stages.
struct DataCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "data", abstract: "Instruction data from raw articles, and the curation stages.",
        subcommands: [DataGenerateCommand.self, DataConvertCommand.self])
}

/// `refinery data convert`: between openai, sharegpt, alpaca, oasst and text.
struct DataConvertCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "convert", abstract: "Convert a JSONL dataset to another format.")

    @Option(help: "Input JSONL (any supported format, detected per line).") var input: String
    @Option(help: "Output JSONL.") var output: String
    @Option(help: "Target: openai, sharegpt, alpaca, oasst or text.") var to: String

    func run() throws {
        try reportingErrors {
            guard let format = DatasetFormat(rawValue: to) else {
                throw CommandError("--to must be one of \(DatasetFormat.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            var text = ""
            var count = 0
            try DatasetReader().read(path: input) { sample, line in
                do { text += try DatasetConversion.row(sample, as: format).compactText + "\n" } catch let error as DataError {
                    throw CommandError("\(input):\(line): \(error.message)")
                }
                count += 1
            }
            do { try Data(text.utf8).write(to: URL(fileURLWithPath: output), options: .atomic) } catch {
                throw CommandError("cannot write \(output): \(error.localizedDescription)")
            }
            Output.line("wrote \(count) samples to \(output) as \(format.rawValue)")
        }
    }
}

/// `refinery data generate`: articles → chunks → LLM back-translation → instruction pairs, resumable.
struct DataGenerateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate",
        abstract: "Turn articles into instruction–answer pairs through an OpenAI-compatible API; rerun to resume.")

    @Option(help: "Articles: {\"artifact_data\": […]} JSON, JSONL (content/text), or a folder of .txt/.md.") var articles: String
    @Option(help: "SQLite state file (created if absent; reuse it to resume).") var state: String
    @Option(help: "Output JSONL (the test split goes next to it as …test.jsonl).") var out: String
    @Option(help: "openai, alpaca or sharegpt.") var format: String = "openai"
    @Option(help: "API base URL up to /v1.") var baseURL: String = "https://api.openai.com/v1"
    @Option(help: "Model name.") var model: String = "gpt-4o-mini"
    @Option(help: "Environment variable holding the API key (never a flag).") var apiKeyEnv: String = "OPENAI_API_KEY"
    @Option(help: "LLM calls in flight at once.") var slots: Int = 4
    @Option(help: "Requests per minute (default: no limit).") var rpm: Int?
    @Option(help: "Tokens per minute (default: no limit).") var tpm: Int?
    @Option(help: "Stop starting calls once this many dollars are spent.") var budget: Double?
    @Option(help: "Dollars per million input tokens.") var priceInput: Double = 0
    @Option(help: "Dollars per million output tokens.") var priceOutput: Double = 0
    @Option(help: "Sampling temperature.") var temperature: Double = 0.7
    @Option(help: "max_tokens per reply.") var maxTokens: Int = 1200
    @Option(help: "json_object or json_schema.") var responseFormat: String = "json_object"
    @Option(help: "Invalid replies tolerated per chunk.") var maxInvalid: Int = 3
    @Option(help: "Request timeout, seconds.") var timeout: Double = 120
    @Option(help: "Smallest chunk, characters.") var minChars: Int = 1000
    @Option(help: "Largest chunk, characters.") var maxChars: Int = 2000
    @Option(help: "reference or keep-markup.") var cleaning: String = "reference"
    @Option(help: "Share of samples in the test split.") var testFraction: Double = 0.1
    @Option(help: "Seed of the split.") var seed: UInt64 = 42
    @Flag(help: "Send failed chunks again.") var retryFailed = false

    func run() async throws {
        do { try await generate() } catch let error as CustomStringConvertible & Error {
            throw CommandError(error.description)
        }
    }

    private func generate() async throws {
        guard let exportFormat = DatasetExport.Format(rawValue: format) else { throw CommandError("--format must be openai, alpaca or sharegpt") }
        guard let cleaningMode = CleaningMode(rawValue: cleaning) else { throw CommandError("--cleaning must be reference or keep-markup") }
        guard slots > 0 else { throw CommandError("--slots must be positive") }
        guard (0..<1).contains(testFraction) else { throw CommandError("--test-fraction must be in [0, 1)") }
        let key = ProcessInfo.processInfo.environment[apiKeyEnv].flatMap { $0.isEmpty ? nil : $0 }
        let store = try RunStore(path: state)
        let report = try Ingest.run(articles: articles, store: store, cleaning: cleaningMode, chunker: try Chunker(minimum: minChars, maximum: maxChars))
        let c = report.chunking
        Output.progress("[ingest] \(report.newArticles) new and \(report.knownArticles) known articles; \(c.chunks) chunks; dropped \(c.emptyArticles) empty articles and \(c.droppedPieces) pieces shorter than \(minChars) characters (\(c.droppedCharacters) characters); \(c.splitSentences) over-long sentences cut\n")
        if retryFailed { Output.progress("[generate] \(try store.requeueFailed()) failed chunks queued again\n") }
        var settings = GenerationSettings(model: model)
        settings.temperature = temperature
        settings.maxTokens = maxTokens
        settings.maxInvalidReplies = maxInvalid
        settings.price = Price(inputPerMillion: priceInput, outputPerMillion: priceOutput)
        switch responseFormat {
        case "json_object": settings.responseFormat = .jsonObject
        case "json_schema": settings.responseFormat = .jsonSchema(name: "instruction_answer_pairs", schema: settings.prompt.schema)
        default: throw CommandError("--response-format must be json_object or json_schema")
        }
        let limiter = RateLimiter(slots: slots, requestsPerMinute: rpm, tokensPerMinute: tpm, budget: budget)
        let client = LLMClient(endpoint: LLMEndpoint(baseURL: baseURL, apiKey: key, timeout: timeout))
        let generator = Generator(store: store, client: client, limiter: limiter, settings: settings)
        let pending = try store.pendingChunks().count
        Output.progress("[generate] \(pending) chunks to send to \(model) at \(baseURL) with \(slots) slots\n")
        var stopped: Error? = nil
        let throttle = ProgressThrottle()
        let generationStart = Date()
        do {
            try await generator.run { p in
                guard throttle.due(final: p.done + p.failed == p.total) else { return }
                let rate = Double(p.requests) / max(p.elapsed, 1e-9)
                let remaining = Double(p.total - p.done - p.failed) / max(Double(p.done + p.failed) / max(p.elapsed, 1e-9), 1e-9)
                Output.progress(String(format: "\r[generate] %d/%d chunks done, %d failed, %d requests (%.1f/s), $%.4f, ETA %@",
                                       p.done, p.total, p.failed, p.requests, rate, p.dollars, TrainCommand.duration(remaining)))
            }
        } catch {
            stopped = error
        }
        let generationSeconds = Date().timeIntervalSince(generationStart)
        Output.progress("\n")
        Output.progress(String(format: "[generate] %d chunks in %.2f s: %.2f chunks/s\n", pending, generationSeconds, Double(pending) / max(generationSeconds, 1e-9)))
        let (trainCount, testCount) = try DatasetExport.write(store: store, output: out, format: exportFormat, testFraction: testFraction, seed: seed)
        let counts = try store.chunkCounts()
        let usage = try store.totalUsage()
        Output.line("wrote \(out) (\(trainCount) samples) and \(DatasetExport.testPath(for: out)) (\(testCount)); chunks: \(counts[.done] ?? 0) done, \(counts[.failed] ?? 0) failed, \(counts[.pending] ?? 0) pending; \(usage.requests) requests, \(usage.usage.promptTokens)+\(usage.usage.completionTokens) tokens, $\(String(format: "%.4f", usage.usage.cost))")
        if let stopped { throw stopped }
    }
}
