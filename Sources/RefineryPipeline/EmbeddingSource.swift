import Foundation
import RefineryCore
import RefineryCuration
import RefineryLLM
import RefineryModel

/// Where a stage's embeddings come from: a local sentence-transformers folder (`model:`) or an
/// OpenAI-compatible `/v1/embeddings` endpoint (`base_url:` + `embedding_model:`, the key read
/// from the environment variable `api_key_env:` names). Nothing is loaded until the stage runs.
public enum EmbeddingSource: Sendable, Equatable {
    case local(directory: String, dtype: String)
    case endpoint(baseURL: String, model: String, apiKeyEnvironment: String?, batchSize: Int)

    /// The config keys this reads.
    static let keys = ["model", "dtype", "base_url", "embedding_model", "api_key_env", "batch_size"]

    init(_ s: ConfigSection) throws {
        let model = try s.string("model"), baseURL = try s.string("base_url"), remote = try s.string("embedding_model")
        switch (model, baseURL, remote) {
        case let (directory?, nil, nil):
            let dtype = try s.string("dtype") ?? "auto"
            _ = try DTypeChoice(parsing: dtype, source: "\(s.path): \(s.name).dtype")
            self = .local(directory: directory, dtype: dtype)
        case let (nil, url?, name?):
            let batch = try s.int("batch_size") ?? 64
            guard (1...2048).contains(batch) else { throw PipelineError("\(s.path): \(s.name).batch_size must be 1–2048, found \(batch)") }
            self = .endpoint(baseURL: url, model: name, apiKeyEnvironment: try s.string("api_key_env"), batchSize: batch)
        default:
            throw PipelineError("\(s.path): \(s.name) needs the embedding model: model: <sentence-transformers folder>, or base_url: and embedding_model: for an OpenAI-compatible /v1/embeddings endpoint")
        }
    }

    /// The embedder, loaded now; `onRetry` hears of an endpoint's retried attempts.
    public func makeEmbedder(onRetry: @escaping @Sendable (String) -> Void = { _ in }) throws -> any TextEmbedder {
        switch self {
        case let .local(directory, dtype):
            return try LocalTextEmbedder(directory: URL(fileURLWithPath: directory), dtype: try DTypeChoice(parsing: dtype, source: "dtype"))
        case let .endpoint(baseURL, model, variable, batchSize):
            var key: String? = nil
            if let variable {
                guard let value = ProcessInfo.processInfo.environment[variable], !value.isEmpty else {
                    throw PipelineError("the embeddings endpoint's key is read from $\(variable), which is not set; export it or change api_key_env")
                }
                key = value
            }
            return EndpointTextEmbedder(endpoint: LLMEndpoint(baseURL: baseURL, apiKey: key), model: model, batchSize: batchSize, onRetry: onRetry)
        }
    }

    var settingsText: String {
        switch self {
        case let .local(directory, dtype): return "model=\(directory) dtype=\(dtype)"
        case let .endpoint(baseURL, model, _, _): return "base_url=\(baseURL) embedding_model=\(model)"
        }
    }
}

extension EmbeddingSource {
    /// The source from command-line settings in the config's spelling (`source` names them in errors).
    public static func fromSettings(_ settings: [String: Any], source: String) throws -> EmbeddingSource {
        try EmbeddingSource(ConfigSection(path: source, name: "embed", raw: settings))
    }
}
