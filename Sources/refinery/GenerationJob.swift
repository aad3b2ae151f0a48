import Foundation
import RefineryData
import RefineryLLM
import RefineryStore

/// Flags of a generation run (nil: take the config's value or the default).
struct GenerationFlags {
    var articles: String? = nil, state: String? = nil, out: String? = nil, format: String? = nil
    var baseURL: String? = nil, model: String? = nil, apiKeyEnv: String? = nil
    var slots: Int? = nil, rpm: Int? = nil, tpm: Int? = nil, budget: Double? = nil
    var priceInput: Double? = nil, priceOutput: Double? = nil, temperature: Double? = nil, maxTokens: Int? = nil
    var responseFormat: String? = nil, maxInvalid: Int? = nil, timeout: Double? = nil
    var minChars: Int? = nil, maxChars: Int? = nil, cleaning: String? = nil, testFraction: Double? = nil, seed: UInt64? = nil
}

/// A generation run resolved from flags over a run config's `data` and `generate` sections:
/// used by `data generate` on one machine and by the cluster's coordinator.
struct GenerationJob {
    static let dataKeys: Set<String> = ["articles", "state", "out", "format", "cleaning", "min_chars", "max_chars", "test_fraction", "seed"]
    static let generateKeys: Set<String> = ["base_url", "model", "api_key_env", "slots", "rpm", "tpm", "budget", "price_input", "price_output",
                                            "temperature", "max_tokens", "response_format", "max_invalid", "timeout", "system_prompt",
                                            "user_prompt", "pairs_per_chunk"]

    var articles: String
    var state: String
    var out: String
    var exportFormat: DatasetExport.Format
    var cleaning: CleaningMode
    var minChars: Int
    var maxChars: Int
    var testFraction: Double
    var seed: UInt64
    var baseURL: String
    var apiKeyEnv: String
    var slots: Int
    var rpm: Int?
    var tpm: Int?
    var budget: Double?
    var timeout: Double
    var settings: GenerationSettings

    init(config: String?, flags: GenerationFlags) throws {
        let dataSection = try config.map { try RunConfigSection(path: $0, section: "data") }
        let generateSection = try config.map { try RunConfigSection(path: $0, section: "generate") }
        try dataSection?.check(allowed: Self.dataKeys)
        try generateSection?.check(allowed: Self.generateKeys)
        let f = flags
        guard let articles = try configured(f.articles, dataSection, "articles", { try $0.string($1) }) else { throw CommandError("--articles is required (or data.articles in --config)") }
        guard let state = try configured(f.state, dataSection, "state", { try $0.string($1) }) else { throw CommandError("--state is required (or data.state in --config)") }
        guard let out = try configured(f.out, dataSection, "out", { try $0.string($1) }) else { throw CommandError("--out is required (or data.out in --config)") }
        self.articles = articles
        self.state = state
        self.out = out
        let format = try configured(f.format, dataSection, "format", { try $0.string($1) }) ?? "openai"
        let cleaning = try configured(f.cleaning, dataSection, "cleaning", { try $0.string($1) }) ?? "reference"
        minChars = try configured(f.minChars, dataSection, "min_chars", { try $0.int($1) }) ?? 1000
        maxChars = try configured(f.maxChars, dataSection, "max_chars", { try $0.int($1) }) ?? 2000
        testFraction = try configured(f.testFraction, dataSection, "test_fraction", { try $0.double($1) }) ?? 0.1
        seed = try configured(f.seed, dataSection, "seed", { try $0.int($1).map { UInt64(max(0, $0)) } }) ?? 42
        baseURL = try configured(f.baseURL, generateSection, "base_url", { try $0.string($1) }) ?? "https://api.openai.com/v1"
        let model = try configured(f.model, generateSection, "model", { try $0.string($1) }) ?? "gpt-4o-mini"
        apiKeyEnv = try configured(f.apiKeyEnv, generateSection, "api_key_env", { try $0.string($1) }) ?? "OPENAI_API_KEY"
        slots = try configured(f.slots, generateSection, "slots", { try $0.int($1) }) ?? 4
        rpm = try configured(f.rpm, generateSection, "rpm", { try $0.int($1) })
        tpm = try configured(f.tpm, generateSection, "tpm", { try $0.int($1) })
        budget = try configured(f.budget, generateSection, "budget", { try $0.double($1) })
        let priceInput = try configured(f.priceInput, generateSection, "price_input", { try $0.double($1) }) ?? 0
        let priceOutput = try configured(f.priceOutput, generateSection, "price_output", { try $0.double($1) }) ?? 0
        let temperature = try configured(f.temperature, generateSection, "temperature", { try $0.double($1) }) ?? 0.7
        let maxTokens = try configured(f.maxTokens, generateSection, "max_tokens", { try $0.int($1) }) ?? 1200
        let responseFormat = try configured(f.responseFormat, generateSection, "response_format", { try $0.string($1) }) ?? "json_object"
        let maxInvalid = try configured(f.maxInvalid, generateSection, "max_invalid", { try $0.int($1) }) ?? 3
        timeout = try configured(f.timeout, generateSection, "timeout", { try $0.double($1) }) ?? 120
        var prompt = GenerationPrompt()
        if let system = try generateSection?.string("system_prompt") { prompt.system = system }
        if let user = try generateSection?.string("user_prompt") {
            guard user.contains("{extract}") else { throw CommandError("\(config ?? ""): generate.user_prompt must contain {extract}") }
            prompt.userTemplate = user
        }
        if let count = try generateSection?.int("pairs_per_chunk") {
            guard count > 0 else { throw CommandError("generate.pairs_per_chunk must be positive") }
            prompt.pairsPerChunk = count
        }
        guard let exportFormat = DatasetExport.Format(rawValue: format) else { throw CommandError("--format must be openai, alpaca or sharegpt") }
        guard let cleaningMode = CleaningMode(rawValue: cleaning) else { throw CommandError("--cleaning must be reference or keep-markup") }
        guard slots > 0 else { throw CommandError("--slots must be positive") }
        guard (0..<1).contains(testFraction) else { throw CommandError("--test-fraction must be in [0, 1)") }
        self.exportFormat = exportFormat
        self.cleaning = cleaningMode
        var settings = GenerationSettings(model: model)
        settings.prompt = prompt
        settings.temperature = temperature
        settings.maxTokens = maxTokens
        settings.maxInvalidReplies = maxInvalid
        settings.price = Price(inputPerMillion: priceInput, outputPerMillion: priceOutput)
        switch responseFormat {
        case "json_object": settings.responseFormat = .jsonObject
        case "json_schema": settings.responseFormat = .jsonSchema(name: "instruction_answer_pairs", schema: settings.prompt.schema)
        default: throw CommandError("--response-format must be json_object or json_schema")
        }
        self.settings = settings
    }

    /// The API key from the environment variable named by `apiKeyEnv` (never from a flag or file).
    var apiKey: String? { ProcessInfo.processInfo.environment[apiKeyEnv].flatMap { $0.isEmpty ? nil : $0 } }

    /// Articles → cleaned chunks in the store (articles already there are kept as they are),
    /// with a line saying what was dropped.
    func ingest(into store: RunStore) throws {
        let report = try Ingest.run(articles: articles, store: store, cleaning: cleaning, chunker: try Chunker(minimum: minChars, maximum: maxChars))
        let c = report.chunking
        Output.progress("[ingest] \(report.newArticles) new and \(report.knownArticles) known articles; \(c.chunks) chunks; dropped \(c.emptyArticles) empty articles and \(c.droppedPieces) pieces shorter than \(minChars) characters (\(c.droppedCharacters) characters); \(c.splitSentences) over-long sentences cut\n")
    }
}
