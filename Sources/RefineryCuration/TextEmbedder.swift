import Foundation
import RefineryCore
import RefineryLLM
import RefineryModel

/// Turns texts into vectors: a local sentence-embedding model or an OpenAI-compatible
/// `/v1/embeddings` endpoint.
public protocol TextEmbedder: Sendable {
    /// Identifies the vectors this embedder makes (model and precision), under which they are cached:
    /// two embedders with one key must give the same vectors.
    var key: String { get }
    /// Texts per unit of work that is stored as soon as it is done (a request for an endpoint).
    var preferredChunk: Int { get }
    /// The vectors of `texts`, in order; `progress` is told how many are done.
    func embed(_ texts: [String], progress: (Int) -> Void) throws -> [[Float]]
}

/// A sentence-transformers folder run by Refinery's BERT encoder.
public struct LocalTextEmbedder: TextEmbedder {
    public let model: SentenceEmbedder
    public let key: String

    /// Loads the model in `directory`; the cache key names its folder, weights and precision.
    public init(directory: URL, dtype: DTypeChoice = .auto) throws {
        model = try SentenceEmbedder(directory: directory, dtype: dtype)
        let weights = model.layout.encoderDirectory.appendingPathComponent("model.safetensors")
        let size = (try? FileManager.default.attributesOfItem(atPath: weights.path)[.size] as? Int) ?? 0
        key = "local:\(directory.standardizedFileURL.path):\(size):\(model.encoder.dtype.rawValue)"
    }

    public var preferredChunk: Int { 512 }

    public func embed(_ texts: [String], progress: (Int) -> Void) throws -> [[Float]] {
        try model.embed(texts, progress: progress)
    }
}

/// An OpenAI-compatible `/v1/embeddings` endpoint, asked `batchSize` texts at a time; retryable
/// failures (rate limits, 5xx, timeouts, malformed replies) are retried by the retry policy.
public struct EndpointTextEmbedder: TextEmbedder {
    public let client: LLMClient
    public let model: String
    public let batchSize: Int
    public let retry: RetryPolicy
    /// Told of each failed attempt that will be tried again, as a sentence.
    public let onRetry: @Sendable (String) -> Void
    public var key: String { "endpoint:\(client.endpoint.baseURL):\(model)" }
    public var preferredChunk: Int { batchSize }

    public init(endpoint: LLMEndpoint, model: String, batchSize: Int = 64, retry: RetryPolicy = RetryPolicy(),
                onRetry: @escaping @Sendable (String) -> Void = { _ in }) {
        client = LLMClient(endpoint: endpoint)
        self.model = model
        self.batchSize = max(1, batchSize)
        self.retry = retry
        self.onRetry = onRetry
    }

    public func embed(_ texts: [String], progress: (Int) -> Void) throws -> [[Float]] {
        var vectors: [[Float]] = []
        vectors.reserveCapacity(texts.count)
        for start in stride(from: 0, to: texts.count, by: batchSize) {
            let batch = Array(texts[start..<min(texts.count, start + batchSize)])
            vectors += try waitFor { try await self.embedWithRetries(batch) }
            progress(vectors.count)
        }
        return vectors
    }

    private func embedWithRetries(_ batch: [String]) async throws -> [[Float]] {
        var attempt = 1
        while true {
            do {
                return try await client.embed(batch, model: model).vectors
            } catch {
                guard error.isRetryable, attempt < retry.maxAttempts else {
                    throw CoreError("the embeddings endpoint \(client.endpoint.baseURL) failed for model \(model) after \(attempt) attempt\(attempt == 1 ? "" : "s"): \(error)")
                }
                let delay = retry.delay(afterAttempt: attempt, error: error)
                onRetry(String(format: "retrying a batch of %d texts: %@ (attempt %d of %d failed, next in %.1f s)",
                               batch.count, error.description, attempt, retry.maxAttempts, delay))
                try await Task.sleep(nanoseconds: UInt64(delay * 1e9))
                attempt += 1
            }
        }
    }
}

/// Runs `operation` on Swift's concurrency pool and blocks the calling thread until it is done —
/// for synchronous callers (curation stages, commands) of an asynchronous client. The caller
/// must not itself run on that pool.
func waitFor<T: Sendable>(_ operation: @escaping @Sendable () async throws -> T) throws -> T {
    let box = ResultBox<T>()
    let done = DispatchSemaphore(value: 0)
    Task.detached {
        do { box.result = .success(try await operation()) } catch { box.result = .failure(error) }
        done.signal()
    }
    done.wait()
    guard let result = box.result else { throw CoreError("an asynchronous call ended without a result") }
    return try result.get()
}

private final class ResultBox<T>: @unchecked Sendable {
    var result: Result<T, any Error>?
}
