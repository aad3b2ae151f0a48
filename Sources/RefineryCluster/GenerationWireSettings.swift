import Foundation
import RefineryData
import RefineryLLM
import RefineryText

/// What a worker needs to make a run's LLM calls (`Welcome.generation`). Never holds the key.
public struct GenerationWireSettings: Sendable {
    public var baseURL: String
    public var timeout: Double
    /// Environment variable the worker reads the key from when the coordinator sends none.
    public var apiKeyEnv: String
    public var settings: GenerationSettings

    public init(baseURL: String, timeout: Double, apiKeyEnv: String, settings: GenerationSettings) {
        self.baseURL = baseURL
        self.timeout = timeout
        self.apiKeyEnv = apiKeyEnv
        self.settings = settings
    }

    /// The wire form (`Welcome.generation`).
    public var message: Refinery_Cluster_GenerationSettings {
        let s = settings
        var m = Refinery_Cluster_GenerationSettings()
        m.baseURL = baseURL
        m.timeoutSeconds = timeout
        m.apiKeyEnv = apiKeyEnv
        m.model = s.model
        m.systemPrompt = s.prompt.system
        m.userPrompt = s.prompt.userTemplate
        m.pairsPerChunk = UInt32(clamping: s.prompt.pairsPerChunk)
        m.temperature = s.temperature
        m.maxTokens = UInt32(clamping: s.maxTokens)
        switch s.responseFormat {
        case .jsonSchema: m.responseFormat = .jsonSchema
        case .text: m.responseFormat = .text
        case .jsonObject: m.responseFormat = .jsonObject
        }
        m.maxInvalid = UInt32(clamping: s.maxInvalidReplies)
        m.retryAttempts = UInt32(clamping: s.retry.maxAttempts)
        m.retryBaseDelay = s.retry.baseDelay
        m.retryMaxDelay = s.retry.maxDelay
        m.priceInput = s.price.inputPerMillion
        m.priceOutput = s.price.outputPerMillion
        return m
    }

    /// Reads and checks the wire form: every number finite and in a sane range, the user prompt
    /// holding `{extract}`.
    public init(message m: Refinery_Cluster_GenerationSettings) throws(WireRefusal) {
        func check(_ condition: Bool, _ what: String) throws(WireRefusal) { if !condition { throw WireRefusal("generation settings: \(what)") } }
        try check(!m.baseURL.isEmpty && m.baseURL.utf8.count <= 2048, "base_url is empty or too long")
        try check(m.timeoutSeconds.isFinite && m.timeoutSeconds > 0 && m.timeoutSeconds <= 86_400, "timeout \(m.timeoutSeconds) is out of range")
        try check(!m.model.isEmpty && m.model.utf8.count <= 512, "model is empty or too long")
        try check(m.userPrompt.contains("{extract}") && m.userPrompt.utf8.count <= 1 << 20 && m.systemPrompt.utf8.count <= 1 << 20, "the prompts are too long or the user prompt lacks {extract}")
        try check((1...1000).contains(m.pairsPerChunk), "pairs_per_chunk \(m.pairsPerChunk) is out of range")
        try check(m.temperature.isFinite && (0...10).contains(m.temperature), "temperature \(m.temperature) is out of range")
        try check((1...1_000_000).contains(m.maxTokens), "max_tokens \(m.maxTokens) is out of range")
        try check(m.maxInvalid <= 1000 && (1...1000).contains(m.retryAttempts), "max_invalid or retry_attempts is out of range")
        try check(m.retryBaseDelay.isFinite && m.retryMaxDelay.isFinite && m.retryBaseDelay >= 0 && m.retryMaxDelay >= 0 && m.retryMaxDelay <= 86_400, "retry delays are out of range")
        try check(m.priceInput.isFinite && m.priceOutput.isFinite && m.priceInput >= 0 && m.priceOutput >= 0, "prices are out of range")
        try check(!m.apiKeyEnv.isEmpty && m.apiKeyEnv.utf8.count <= 256, "api_key_env is empty or too long")
        var settings = GenerationSettings(model: m.model)
        settings.prompt = GenerationPrompt(system: m.systemPrompt, userTemplate: m.userPrompt, pairsPerChunk: Int(m.pairsPerChunk))
        settings.temperature = m.temperature
        settings.maxTokens = Int(m.maxTokens)
        settings.maxInvalidReplies = Int(m.maxInvalid)
        settings.retry = RetryPolicy(maxAttempts: Int(m.retryAttempts), baseDelay: m.retryBaseDelay, maxDelay: m.retryMaxDelay)
        settings.price = Price(inputPerMillion: m.priceInput, outputPerMillion: m.priceOutput)
        switch m.responseFormat {
        case .jsonSchema: settings.responseFormat = .jsonSchema(name: "instruction_answer_pairs", schema: settings.prompt.schema)
        case .text: settings.responseFormat = .text
        case .jsonObject: settings.responseFormat = .jsonObject
        case .UNRECOGNIZED(let value): throw WireRefusal("generation settings: unknown response format \(value)")
        }
        self.init(baseURL: m.baseURL, timeout: m.timeoutSeconds, apiKeyEnv: m.apiKeyEnv, settings: settings)
    }
}
