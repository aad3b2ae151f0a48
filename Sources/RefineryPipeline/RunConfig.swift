import Foundation
import RefineryCluster
import RefineryData
import RefineryLLM
import RefineryModel
import RefineryText

/// Values given on the command line for one section, keyed like the config's keys
/// (`lr`, `lora_r`, …); they win over the file. Only flags the user gave are present.
public typealias ConfigOverrides = [String: any Sendable]

/// A run config (DESIGN §5): the sections `data`, `generate`, `curate`, `train`, `export`, each
/// with its defaults defined once here. Unknown sections and keys are refused with the key and
/// the section named.
public struct RunConfig: Sendable {
    public var path: String?
    public var data = DataConfig()
    public var generate = GenerateConfig()
    public var curate = CurationPlan()
    public var train = TrainConfig()
    public var export = ExportConfig()

    public init() {}

    /// Reads `path` (if any), then lays `overrides[section]` over it.
    public init(path: String?, overrides: [String: ConfigOverrides] = [:]) throws {
        self.path = path
        let file = try path.map(ConfigFile.init(path:))
        func section(_ name: String) throws -> ConfigSection {
            var section = try file?.section(name) ?? ConfigSection(path: "the command line", name: name, raw: nil)
            section.overlay(overrides[name] ?? [:])
            return section
        }
        data = try DataConfig(section("data"))
        generate = try GenerateConfig(section("generate"))
        curate = try CurationPlan(path: path ?? "the command line", raw: file?.top["curate"])
        train = try TrainConfig(section("train"))
        export = try ExportConfig(section("export"))
    }
}

/// `data`: where articles come from and where the dataset goes.
public struct DataConfig: Sendable {
    public static let keys = ["articles", "state", "out", "format", "cleaning", "min_chars", "max_chars", "test_fraction", "seed"]
    public var articles: String?
    public var state: String?
    public var out: String?
    public var format: DatasetExport.Format = .openai
    public var cleaning: CleaningMode = .reference
    public var minChars = 1000
    public var maxChars = 2000
    public var testFraction = 0.1
    public var seed: UInt64 = 42

    public init() {}

    init(_ s: ConfigSection) throws {
        articles = try s.string("articles")
        state = try s.string("state")
        out = try s.string("out")
        if let name = try s.string("format") {
            guard let value = DatasetExport.Format(rawValue: name) else { throw PipelineError("\(s.path): data.format (--format) must be openai, alpaca or sharegpt, found \(name)") }
            format = value
        }
        if let name = try s.string("cleaning") {
            guard let value = CleaningMode(rawValue: name) else { throw PipelineError("\(s.path): data.cleaning (--cleaning) must be reference or keep-markup, found \(name)") }
            cleaning = value
        }
        minChars = try s.int("min_chars") ?? minChars
        maxChars = try s.int("max_chars") ?? maxChars
        testFraction = try s.double("test_fraction") ?? testFraction
        guard (0..<1).contains(testFraction) else { throw PipelineError("\(s.path): data.test_fraction (--test-fraction) must be in [0, 1)") }
        seed = try s.seed("seed") ?? seed
        try s.finish(known: Self.keys)
    }
}

/// `generate`: the LLM endpoint, sampling, limits and prompts of back-translation.
public struct GenerateConfig: Sendable {
    public static let keys = ["base_url", "model", "api_key_env", "slots", "rpm", "tpm", "budget", "price_input", "price_output", "temperature",
                              "max_tokens", "response_format", "max_invalid", "timeout", "system_prompt", "user_prompt", "pairs_per_chunk"]
    public var baseURL = "https://api.openai.com/v1"
    public var apiKeyEnv = "OPENAI_API_KEY"
    public var slots = 4
    public var rpm: Int?
    public var tpm: Int?
    public var budget: Double?
    public var timeout = 120.0
    /// Model, prompts, sampling, reply checks and prices.
    public var settings = GenerationSettings(model: "gpt-4o-mini")

    public init() {}

    init(_ s: ConfigSection) throws {
        baseURL = try s.string("base_url") ?? baseURL
        apiKeyEnv = try s.string("api_key_env") ?? apiKeyEnv
        slots = try s.int("slots") ?? slots
        guard slots > 0 else { throw PipelineError("\(s.path): generate.slots (--slots) must be positive") }
        rpm = try s.int("rpm")
        tpm = try s.int("tpm")
        budget = try s.double("budget")
        timeout = try s.double("timeout") ?? timeout
        guard (rpm ?? 1) > 0, (tpm ?? 1) > 0 else { throw PipelineError("\(s.path): generate.rpm and generate.tpm (--rpm, --tpm) must be positive") }
        guard budget.map({ $0.isFinite && $0 >= 0 }) ?? true else { throw PipelineError("\(s.path): generate.budget (--budget) must be a number of dollars ≥ 0") }
        settings.model = try s.string("model") ?? settings.model
        settings.temperature = try s.double("temperature") ?? settings.temperature
        settings.maxTokens = try s.int("max_tokens") ?? settings.maxTokens
        settings.maxInvalidReplies = try s.int("max_invalid") ?? settings.maxInvalidReplies
        guard settings.maxInvalidReplies >= 0 else { throw PipelineError("\(s.path): generate.max_invalid (--max-invalid) must be ≥ 0") }
        settings.price = try s.price()
        if let system = try s.string("system_prompt") { settings.prompt.system = system }
        if let user = try s.string("user_prompt") {
            guard user.contains("{extract}") else { throw PipelineError("\(s.path): generate.user_prompt must contain {extract}") }
            settings.prompt.userTemplate = user
        }
        if let count = try s.int("pairs_per_chunk") {
            guard count > 0 else { throw PipelineError("\(s.path): generate.pairs_per_chunk must be positive") }
            settings.prompt.pairsPerChunk = count
        }
        switch try s.string("response_format") ?? "json_object" {
        case "json_object": settings.responseFormat = .jsonObject
        case "json_schema": settings.responseFormat = .jsonSchema(name: "instruction_answer_pairs", schema: settings.prompt.schema)
        case let other: throw PipelineError("\(s.path): generate.response_format (--response-format) must be json_object or json_schema, found \(other)")
        }
        try s.finish(known: Self.keys)
        // The rules workers check these settings by when they arrive: a config they would refuse
        // is refused here, before anything runs (on one machine too, for the same limits).
        let wire = GenerationWireSettings(baseURL: baseURL, timeout: timeout, apiKeyEnv: apiKeyEnv, settings: settings)
        do { _ = try GenerationWireSettings(message: wire.message) } catch { throw PipelineError("\(s.path): \(error.reason)") }
    }

    /// The API key from the environment variable named by `apiKeyEnv` (never from a flag or file).
    public var apiKey: String? { ProcessInfo.processInfo.environment[apiKeyEnv].flatMap { $0.isEmpty ? nil : $0 } }
}

/// `train`: the model, the data and every knob of fine-tuning (defaults in `TrainingOptions`).
public struct TrainConfig: Sendable {
    public static let keys = [
        "model", "data", "output", "method", "lora_r", "lora_alpha", "lora_dropout", "use_rslora", "targets", "lr", "scheduler",
        "warmup_steps", "steps", "epochs", "micro_batch_size", "grad_accum", "max_length", "packing", "no_shuffle", "shuffle", "seed",
        "max_grad_norm", "weight_decay", "init_adapter", "eval_data", "eval_every", "checkpoint_every", "gradient_checkpointing", "dtype",
        "format", "template", "train_on", "eval_split", "optimizer", "nf4_cache", "report_to",
    ]
    public var model: String?
    public var data: String?
    public var output: String?
    public var evalData: String?
    /// Hold out this fraction of `data` for eval (by a seeded hash of each sample).
    public var evalSplit: Double?
    /// Start from this PEFT adapter instead of a fresh one.
    public var initAdapter: String?
    /// Keep QLoRA's quantized base in this folder between runs (`NF4Cache`).
    public var nf4Cache: String?
    /// Also write TensorBoard event files to `OUTPUT/runs` (`report_to: tensorboard`).
    public var reportToTensorBoard = false
    /// nil: detect the format per line.
    public var format: DatasetFormat?
    /// A built-in chat template instead of the model's.
    public var template: String?
    public var options = TrainingOptions()

    public init() {}

    /// Whether the section asks for training at all.
    public var isRequested: Bool { model != nil || data != nil }

    init(_ s: ConfigSection) throws {
        model = try s.string("model")
        data = try s.string("data")
        output = try s.string("output")
        evalData = try s.string("eval_data")
        evalSplit = try s.double("eval_split")
        if let evalSplit, !(evalSplit > 0 && evalSplit < 1) { throw PipelineError("\(s.path): train.eval_split (--eval-split) must be between 0 and 1") }
        initAdapter = try s.string("init_adapter")
        nf4Cache = try s.string("nf4_cache")
        if let target = try s.string("report_to") {
            guard ["tensorboard", "none"].contains(target) else {
                throw PipelineError("\(s.path): train.report_to (--report-to) must be tensorboard or none, found \(target)")
            }
            reportToTensorBoard = target == "tensorboard"
        }
        template = try s.string("template")
        if let name = try s.string("format"), name != "auto" {
            guard let value = DatasetFormat(rawValue: name) else {
                throw PipelineError("unknown --format \(name) (train.format, \(s.path)); use auto, \(DatasetFormat.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            format = value
        }
        var o = TrainingOptions()
        if let name = try s.string("method") {
            guard let value = TrainingMethod(rawValue: name) else { throw PipelineError("\(s.path): train.method (--method) must be lora, full or qlora, found \(name)") }
            o.method = value
        }
        if let name = try s.string("optimizer") {
            guard let value = OptimizerChoice(parsing: name) else {
                throw PipelineError("\(s.path): train.optimizer (--optimizer) must be adamw or adamw-8bit, found \(name)")
            }
            o.optimizer = value
        }
        let rank = try s.int("lora_r") ?? o.lora.rank
        o.lora = LoRAConfig(rank: rank, alpha: try s.double("lora_alpha") ?? Double(2 * rank), dropout: try s.double("lora_dropout") ?? o.lora.dropout,
                            useRSLoRA: try s.bool("use_rslora") ?? o.lora.useRSLoRA,
                            targets: LoRATargets.parse(flag: try s.strings("targets")?.joined(separator: ",") ?? "all-linear"))
        o.learningRate = try s.double("lr") ?? o.learningRate
        if let name = try s.string("scheduler") {
            guard let value = LearningRateSchedule(rawValue: name) else { throw PipelineError("\(s.path): train.scheduler (--scheduler) must be linear, cosine or constant, found \(name)") }
            o.schedule = value
        }
        o.warmupSteps = try s.int("warmup_steps") ?? o.warmupSteps
        o.steps = try s.int("steps")
        o.epochs = try s.double("epochs") ?? o.epochs
        o.microBatchSize = try s.int("micro_batch_size") ?? o.microBatchSize
        o.gradientAccumulation = try s.int("grad_accum") ?? o.gradientAccumulation
        o.maxLength = try s.int("max_length") ?? o.maxLength
        o.packing = try s.bool("packing") ?? o.packing
        o.shuffle = try s.bool("shuffle") ?? o.shuffle
        if try s.bool("no_shuffle") == true { o.shuffle = false }
        o.seed = try s.seed("seed") ?? o.seed
        if let clip = try s.double("max_grad_norm") {
            guard clip.isFinite else { throw PipelineError("\(s.path): train.max_grad_norm (--max-grad-norm) must be a number (0 disables clipping)") }
            o.maxGradNorm = clip > 0 ? clip : nil
        }
        o.weightDecay = try s.double("weight_decay") ?? o.weightDecay
        o.evalEvery = try s.int("eval_every")
        o.checkpointEvery = try s.int("checkpoint_every") ?? o.checkpointEvery
        o.gradientCheckpointing = try s.bool("gradient_checkpointing") ?? o.gradientCheckpointing
        if let text = try s.string("dtype") {
            do { o.dtype = try DTypeChoice(parsing: text, source: "train.dtype (--dtype)") } catch let error as ModelError {
                throw PipelineError("\(s.path): \(error.message)")
            }
        }
        if let name = try s.string("train_on") {
            guard let value = TrainOn(rawValue: name) else { throw PipelineError("\(s.path): train.train_on (--train-on) must be assistant or all, found \(name)") }
            o.trainOn = value
        }
        do { try o.validate() } catch let error as ModelError { throw PipelineError("\(s.path == "the command line" ? "" : s.path + ": ")\(error.message)") }
        options = o
        try s.finish(known: Self.keys)
    }
}

/// `export`: what to write after training.
public struct ExportConfig: Sendable {
    public static let keys = ["merged"]
    /// Folder for the adapter merged into the base model.
    public var merged: String?

    public init() {}

    init(_ s: ConfigSection) throws {
        merged = try s.string("merged")
        try s.finish(known: Self.keys)
    }
}
