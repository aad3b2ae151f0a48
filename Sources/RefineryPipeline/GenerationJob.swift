import Foundation
import RefineryCore
import RefineryData
import RefineryLLM
import RefineryStore

/// Back-translation of a run's articles into instruction pairs, from the config's `data` and
/// `generate` sections: on this machine (`data generate`) or handed to workers (the cluster).
public struct GenerationJob: Sendable {
    public let articles: String
    public let state: String
    public let out: String
    public let data: DataConfig
    public let generate: GenerateConfig

    /// Checks that the config names the articles, the state file and the output.
    public init(config: RunConfig) throws {
        guard let articles = config.data.articles else { throw PipelineError("--articles is required (or data.articles in --config)") }
        guard let state = config.data.state else { throw PipelineError("--state is required (or data.state in --config)") }
        guard let out = config.data.out else { throw PipelineError("--out is required (or data.out in --config)") }
        _ = try Chunker(minimum: config.data.minChars, maximum: config.data.maxChars)
        self.articles = articles
        self.state = state
        self.out = out
        data = config.data
        generate = config.generate
    }

    /// Articles → cleaned chunks in the store (articles already there are kept as they are).
    public func ingest(into store: RunStore, report: ProgressReport) throws {
        let result = try Ingest.run(articles: articles, store: store, cleaning: data.cleaning,
                                    chunker: try Chunker(minimum: data.minChars, maximum: data.maxChars))
        let c = result.chunking
        report("[ingest] \(result.newArticles) new and \(result.knownArticles) known articles; \(c.chunks) chunks; dropped \(c.emptyArticles) empty articles and \(c.droppedPieces) pieces shorter than \(data.minChars) characters (\(c.droppedCharacters) characters); \(c.splitSentences) over-long sentences cut\n")
    }

    /// Estimated tokens of one chunk's call: its prompt (about 4 characters a token) plus the reply limit.
    public var tokenEstimate: @Sendable (String) -> Int {
        let prompt = generate.settings.prompt, maxTokens = generate.settings.maxTokens
        return { text in prompt.messages(extract: text).map(\.content.count).reduce(0, +) / 4 + maxTokens }
    }

    /// Writes the dataset and its test split from the store; returns a summary line.
    @discardableResult
    public func writeDataset(from store: RunStore) throws -> String {
        let (trainCount, testCount) = try DatasetExport.write(store: store, output: out, format: data.format, testFraction: data.testFraction, seed: data.seed)
        let counts = try store.chunkCounts()
        let usage = try store.totalUsage()
        return "wrote \(out) (\(trainCount) samples) and \(DatasetExport.testPath(for: out)) (\(testCount)); chunks: \(counts[.done] ?? 0) done, \(counts[.failed] ?? 0) failed, \(counts[.pending] ?? 0) pending; \(usage.requests) requests, \(usage.usage.promptTokens)+\(usage.usage.completionTokens) tokens, $\(String(format: "%.4f", usage.usage.cost))"
    }

    /// After generation: an error when every chunk failed (nothing to curate or train on), a
    /// line naming the failures and the way to send them again when some did, nothing otherwise.
    public func checkFailures(in store: RunStore, report: ProgressReport) throws {
        let counts = try store.chunkCounts()
        let failed = counts[.failed] ?? 0
        guard failed > 0 else { return }
        let last = try store.lastChunkFailure() ?? "no error recorded"
        if (counts[.done] ?? 0) == 0 {
            throw PipelineError("every chunk failed (\(failed)), the last with: \(last). There is nothing to curate or train on. "
                                + "Fix the cause, then run the same command again with --retry-failed: failed chunks are sent again, nothing finished is paid twice")
        }
        report("[generate] \(failed) chunk\(failed == 1 ? "" : "s") failed, the last with: \(last); --retry-failed on the next run sends them again\n")
    }

    /// Chunks done or failed.
    static func settled(in store: RunStore) throws -> Int {
        let counts = try store.chunkCounts()
        return (counts[.done] ?? 0) + (counts[.failed] ?? 0)
    }

    /// The whole job on this machine: ingest, send every pending chunk (at most `slots` calls in
    /// flight), write the dataset. Returns the summary line; a run-stopping error is thrown
    /// after the dataset of what finished is written.
    public func runHere(retryFailed: Bool, report: @escaping ProgressReport) async throws -> String {
        let store = try RunStore(path: state)
        try ingest(into: store, report: report)
        if retryFailed { report("[generate] \(try store.requeueFailed()) failed chunks queued again\n") }
        // The budget covers the whole state: what earlier runs spent counts.
        let limiter = RateLimiter(slots: generate.slots, requestsPerMinute: generate.rpm, tokensPerMinute: generate.tpm, budget: generate.budget,
                                  alreadySpent: generate.budget == nil ? 0 : try store.totalUsage().usage.cost)
        let client = LLMClient(endpoint: LLMEndpoint(baseURL: generate.baseURL, apiKey: generate.apiKey, timeout: generate.timeout))
        let generator = Generator(store: store, client: client, limiter: limiter, settings: generate.settings)
        let pending = try store.pendingChunks().count
        let settledBefore = try Self.settled(in: store)
        report("[generate] \(pending) chunks to send to \(generate.settings.model) at \(generate.baseURL) with \(generate.slots) slots\n")
        let throttle = ProgressThrottle()
        let started = Date()
        var stopped: Error? = nil
        do {
            try await generator.run { p in
                guard throttle.due(final: p.done + p.failed == p.total) else { return }
                let rate = Double(p.requests) / max(p.elapsed, 1e-9)
                let remaining = Double(p.total - p.done - p.failed) / max(Double(p.done + p.failed) / max(p.elapsed, 1e-9), 1e-9)
                report("\r[generate] " + ProgressBar.render(done: p.done + p.failed, total: p.total)
                       + String(format: " %d/%d chunks done, %d failed, %d requests (%.1f/s), $%.4f, ETA %@",
                                p.done, p.total, p.failed, p.requests, rate, p.dollars, DurationText.of(remaining)))
            }
        } catch {
            stopped = error
        }
        let seconds = Date().timeIntervalSince(started)
        report("\n")
        let settled = try Self.settled(in: store) - settledBefore
        report(String(format: "[generate] %d of %d chunks settled (done or failed) in %.2f s: %.2f chunks/s\n", settled, pending, seconds,
                      Double(settled) / max(seconds, 1e-9)))
        let summary = try writeDataset(from: store)
        if let stopped { throw stopped }
        try checkFailures(in: store, report: report)
        return summary
    }
}

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

/// Durations for progress lines: `42s`, `3m5s`, `2h10m`.
public enum DurationText {
    public static func of(_ seconds: Double) -> String {
        guard seconds.isFinite else { return "?" }
        let s = Int(seconds.rounded())
        return s >= 3600 ? "\(s / 3600)h\((s % 3600) / 60)m" : (s >= 60 ? "\(s / 60)m\(s % 60)s" : "\(s)s")
    }
}
