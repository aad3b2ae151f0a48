import Foundation
import RefineryCore
import RefineryData
import RefineryLLM
import RefineryText

/// What a worker needs to make a run's LLM calls, as JSON in `Welcome`. Never holds the key.
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

    public var json: String {
        let s = settings
        let format: String
        switch s.responseFormat {
        case .jsonSchema: format = "json_schema"
        case .text: format = "text"
        case .jsonObject: format = "json_object"
        }
        return JSONValue.object([
            ("base_url", .string(baseURL)), ("timeout", .double(timeout)), ("api_key_env", .string(apiKeyEnv)),
            ("model", .string(s.model)), ("system_prompt", .string(s.prompt.system)), ("user_prompt", .string(s.prompt.userTemplate)),
            ("pairs_per_chunk", .int(s.prompt.pairsPerChunk)), ("temperature", .double(s.temperature)), ("max_tokens", .int(s.maxTokens)),
            ("response_format", .string(format)), ("max_invalid", .int(s.maxInvalidReplies)),
            ("retry_attempts", .int(s.retry.maxAttempts)), ("retry_base_delay", .double(s.retry.baseDelay)),
            ("retry_max_delay", .double(s.retry.maxDelay)),
            ("price_input", .double(s.price.inputPerMillion)), ("price_output", .double(s.price.outputPerMillion)),
        ]).compactText
    }

    public init(json text: String) throws {
        let value: JSONValue
        do { value = try JSONValue.parse(text) } catch { throw ClusterError("the coordinator sent unreadable generation settings: \(error)") }
        func string(_ key: String) throws -> String {
            guard let s = value[key]?.stringValue else { throw ClusterError("the coordinator's generation settings lack \(key)") }
            return s
        }
        func number(_ key: String) throws -> Double {
            guard let d = value[key]?.doubleValue else { throw ClusterError("the coordinator's generation settings lack \(key)") }
            return d
        }
        var settings = GenerationSettings(model: try string("model"))
        settings.prompt = GenerationPrompt(system: try string("system_prompt"), userTemplate: try string("user_prompt"),
                                           pairsPerChunk: Int(try number("pairs_per_chunk")))
        settings.temperature = try number("temperature")
        settings.maxTokens = Int(try number("max_tokens"))
        settings.maxInvalidReplies = Int(try number("max_invalid"))
        settings.retry = RetryPolicy(maxAttempts: Int(try number("retry_attempts")), baseDelay: try number("retry_base_delay"),
                                     maxDelay: try number("retry_max_delay"))
        settings.price = Price(inputPerMillion: try number("price_input"), outputPerMillion: try number("price_output"))
        switch try string("response_format") {
        case "json_schema": settings.responseFormat = .jsonSchema(name: "instruction_answer_pairs", schema: settings.prompt.schema)
        case "text": settings.responseFormat = .text
        default: settings.responseFormat = .jsonObject
        }
        self.init(baseURL: try string("base_url"), timeout: try number("timeout"), apiKeyEnv: try string("api_key_env"), settings: settings)
    }
}
