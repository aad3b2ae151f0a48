import ArgumentParser
import RefineryCuration
import RefineryPipeline

/// Where embeddings come from, on the command line: a local sentence-transformers folder, or an
/// OpenAI-compatible `/v1/embeddings` endpoint.
struct EmbeddingOptions: ParsableArguments {
    @Option(help: "Sentence-transformers folder (BERT family, e.g. all-MiniLM-L6-v2) run locally.") var model: String?
    @Option(help: "Precision of the local model: auto, float32 or bfloat16.") var dtype: String = "auto"
    @Option(help: "OpenAI-compatible API base URL up to /v1, for endpoint embeddings (with --embedding-model).") var baseURL: String?
    @Option(help: "Embedding model name at --base-url (e.g. text-embedding-3-small).") var embeddingModel: String?
    @Option(help: "Environment variable holding the endpoint's API key (never the key itself).") var apiKeyEnv: String?
    @Option(help: "Texts per /v1/embeddings request.") var batchSize: Int = 64
    @Option(help: "Embed this top-level field instead of the instruction and answer.") var field: String?

    /// The settings in the config's spelling (keys of a dedup stage).
    var settings: [String: Any] {
        var values: [String: Any] = [:]
        if let model { values["model"] = model; values["dtype"] = dtype }
        if let baseURL { values["base_url"] = baseURL }
        if let embeddingModel { values["embedding_model"] = embeddingModel }
        if let apiKeyEnv { values["api_key_env"] = apiKeyEnv }
        if baseURL != nil { values["batch_size"] = batchSize }
        if let field { values["field"] = field }
        return values
    }

    var embeddedText: EmbeddedText { field.map(EmbeddedText.field) ?? .instructionAndAnswer }
}
