import ArgumentParser
import Foundation
import RefineryData
import RefineryCore
import RefineryPipeline
import RefineryStore
import RefineryText

/// `refinery data …`: the data stages.
struct DataCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "data", abstract: "Instruction data from raw articles, and the curation stages.",
        subcommands: [DataGenerateCommand.self, DataConvertCommand.self, DataDedupCommand.self, DataSplitCommand.self, DataFilterCommand.self, DataDecontaminateCommand.self, DataMixCommand.self, DataCurateCommand.self, DataWhyCommand.self, DataEmbedCommand.self, DataReportCommand.self, DataScoreCommand.self, DataJudgeCommand.self, DataEvolveCommand.self, DataFeedbackCommand.self, DataSynthesizeCommand.self])
}

/// `refinery data dedup`: exact or MinHash deduplication, keeping one sample per group by a stated rule.
struct DataDedupCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dedup", abstract: "Remove duplicate samples (instruction + answer text), keeping one of each group.",
        discussion: """
        exact: SHA-256 of the text with whitespace collapsed and case ignored (--compare-case, \
        --ignore-punctuation change that). minhash: MinHash-LSH over word (or --shingle chars) \
        n-grams with punctuation and case ignored; bands × rows follow the threshold (datasketch's \
        rule, weighted towards recall) unless --bands/--rows are given, and candidates are verified \
        by their signatures' agreement (--no-verify: plain LSH, as datasketch). semantic: \
        SemDeDup — embeddings (--model, or --base-url with --embedding-model; cached in --state), \
        spherical k-means into --clusters groups (default one per ~100 samples), and samples at or \
        above the cosine --threshold (default 0.9) within a cluster are duplicates.
        """)

    @Option(help: "Input JSONL (any supported format).") var input: String
    @Option(help: "Output JSONL (rows unchanged).") var output: String
    @Option(help: "exact, minhash or semantic.") var method: String = "exact"
    @Option(help: "Similarity at which samples are duplicates: estimated Jaccard for minhash (default 0.8), cosine for semantic (default 0.9).") var threshold: Double?
    @Option(help: "k-means clusters for semantic dedup (default: one per ~100 samples).") var clusters: Int?
    @OptionGroup var embedding: EmbeddingOptions
    @Option(help: "MinHash permutations.") var numPerm: Int = 128
    @Option(help: "Words (or characters) per shingle.") var ngram: Int = 5
    @Option(help: "words or chars.") var shingle: String = "words"
    @Option(help: "LSH bands (with --rows; default: derived from the threshold).") var bands: Int?
    @Option(help: "Rows per LSH band.") var rows: Int?
    @Flag(inversion: .prefixedNo, help: "Verify MinHash candidates by their signatures' agreement.") var verify = true
    @Option(help: "Which sample of a group stays: first, longest or score.") var keep: String = "first"
    @Option(help: "The numeric field `--keep score` compares.") var scoreField: String = "score"
    @Flag(help: "Treat samples that differ only in case as different.") var compareCase = false
    @Flag(help: "Ignore punctuation in exact dedup (MinHash always does).") var ignorePunctuation = false
    @Option(help: "SQLite state file: every decision is stored per sample (see `refinery data why`), and a rerun with the same settings and input reuses them.") var state: String?

    func run() throws {
        try reportingErrors {
            var settings: [String: Any] = ["method": method, "num_perm": numPerm, "ngram": ngram,
                                           "shingle": shingle, "verify": verify, "keep": keep, "score_field": scoreField,
                                           "ignore_case": !compareCase]
            if let threshold { settings["threshold"] = threshold }
            if method == "semantic" {
                settings.merge(embedding.settings) { _, new in new }
                if let clusters { settings["clusters"] = clusters }
            } else if embedding.model != nil || embedding.baseURL != nil || clusters != nil {
                throw CommandError("--model, --base-url and --clusters belong to --method semantic")
            }
            if ignorePunctuation { settings["ignore_punctuation"] = true }
            if let bands { settings["bands"] = bands }
            if let rows { settings["rows"] = rows }
            let stage = try DedupStage.fromSettings(settings, source: "refinery data dedup")
            let lines = try DatasetInput.read(input)
            let store = try state.map { try RunStore(path: $0) }
            let kept = try CurationPlan.run(stage, position: 0, on: lines, store: store, pipeline: "data dedup",
                                            report: { Output.progress($0) })
            try DatasetLines.write(kept.map(\.row), to: output)
            Output.line("kept \(kept.count) of \(lines.count) samples (\(lines.count - kept.count) duplicates removed) → \(output)")
        }
    }
}

/// `refinery data split`: a deterministic train/test split by a seeded hash of each sample.
struct DataSplitCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "split", abstract: "Split a dataset into train and test by a seeded hash of each sample (stable across reruns).")

    @Option(help: "Input JSONL.") var input: String
    @Option(help: "Train JSONL; the test split goes next to it as …test.jsonl.") var output: String
    @Option(help: "Share of samples in the test split.") var testFraction: Double = 0.1
    @Option(help: "Seed of the split.") var seed: UInt64 = 42

    func run() throws {
        try reportingErrors {
            let (train, test) = try DatasetLines.split(input, into: output, testFraction: testFraction, seed: seed)
            Output.message("wrote \(train) train samples to \(output) and \(test) test samples to \(DatasetExport.testPath(for: output))")
        }
    }
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
            let count = try DatasetLines.convert(input, to: format, output: output)
            Output.message("wrote \(count) samples to \(output) as \(format.rawValue)")
        }
    }
}

/// `refinery data generate`: articles → chunks → LLM back-translation → instruction pairs, resumable.
struct DataGenerateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate",
        abstract: "Turn articles into instruction–answer pairs through an OpenAI-compatible API; rerun to resume.")

    @Option(help: "Run config YAML: sections `data` (articles, state, out, format, cleaning, min_chars, max_chars, test_fraction, seed) and `generate` (base_url, model, api_key_env, slots, rpm, tpm, budget, price_input, price_output, temperature, max_tokens, response_format, max_invalid, timeout, system_prompt, user_prompt, pairs_per_chunk). Flags win.") var config: String?
    @Option(help: "Articles: {\"artifact_data\": […]} JSON, JSONL (content/text), or a folder of .txt/.md.") var articles: String?
    @Option(help: "SQLite state file (created if absent; reuse it to resume).") var state: String?
    @Option(help: "Output JSONL (the test split goes next to it as …test.jsonl).") var out: String?
    @Option(help: "openai, alpaca or sharegpt (default openai).") var format: String?
    @Option(help: "API base URL up to /v1 (default https://api.openai.com/v1).") var baseURL: String?
    @Option(help: "Model name (default gpt-4o-mini).") var model: String?
    @Option(help: "Environment variable holding the API key, never a flag (default OPENAI_API_KEY).") var apiKeyEnv: String?
    @Option(help: "LLM calls in flight at once (default 4).") var slots: Int?
    @Option(help: "Requests per minute (default: no limit).") var rpm: Int?
    @Option(help: "Tokens per minute (default: no limit).") var tpm: Int?
    @Option(help: "Stop starting calls once this many dollars are spent.") var budget: Double?
    @Option(help: "Dollars per million input tokens.") var priceInput: Double?
    @Option(help: "Dollars per million output tokens.") var priceOutput: Double?
    @Option(help: "Sampling temperature (default 0.7).") var temperature: Double?
    @Option(help: "max_tokens per reply (default 1200).") var maxTokens: Int?
    @Option(help: "json_object or json_schema (default json_object).") var responseFormat: String?
    @Option(help: "Invalid replies tolerated per chunk (default 3).") var maxInvalid: Int?
    @Option(help: "Request timeout, seconds (default 120).") var timeout: Double?
    @Option(help: "Smallest chunk, characters (default 1000).") var minChars: Int?
    @Option(help: "Largest chunk, characters (default 2000).") var maxChars: Int?
    @Option(help: "reference or keep-markup (default reference).") var cleaning: String?
    @Option(help: "Share of samples in the test split (default 0.1).") var testFraction: Double?
    @Option(help: "Seed of the split (default 42).") var seed: Int?
    @Flag(help: "Send failed chunks again.") var retryFailed = false
    @OptionGroup var logFormat: LogFormatOption

    /// The flags the user gave, keyed like the config's keys, per section.
    var overrides: [String: ConfigOverrides] {
        let data: [String: (any Sendable)?] = [
            "articles": articles, "state": state, "out": out, "format": format, "min_chars": minChars, "max_chars": maxChars,
            "cleaning": cleaning, "test_fraction": testFraction, "seed": seed,
        ]
        let generate: [String: (any Sendable)?] = [
            "base_url": baseURL, "model": model, "api_key_env": apiKeyEnv, "slots": slots, "rpm": rpm, "tpm": tpm, "budget": budget,
            "price_input": priceInput, "price_output": priceOutput, "temperature": temperature, "max_tokens": maxTokens,
            "response_format": responseFormat, "max_invalid": maxInvalid, "timeout": timeout,
        ]
        return ["data": data.compactMapValues { $0 }, "generate": generate.compactMapValues { $0 }]
    }

    func run() async throws {
        do {
            try logFormat.apply()
            let job = try GenerationJob(config: try RunConfig(path: config, overrides: overrides))
            Output.message(try await job.runHere(retryFailed: retryFailed, report: Output.progress))
        } catch let error as CustomStringConvertible & Error {
            throw CommandError(error.description)
        }
    }
}

/// `refinery data why ID`: why a sample was dropped or kept, stage by stage, from a state file.
struct DataWhyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "why", abstract: "Say why a sample was dropped or kept by the curation stages of a run (or of data dedup --state).")

    @Argument(help: "The sample's id: its lineage id (generated samples), or what `data dedup --state` stored.") var id: String
    @Option(help: "The run's SQLite state file.") var state: String
    @Flag(help: "Print one JSON object per stage instead of text.") var json = false

    func run() throws {
        try reportingErrors {
            let store = try RunStore(path: state, readOnly: true)
            let history = try store.curationHistory(sample: id)
            guard !history.isEmpty else {
                throw CommandError("no curation decision about \(id) in \(state): check the id (a lineage id such as article-1:c0:p0), or run the curate stages with this state file first")
            }
            for (stage, decision) in history {
                if json {
                    var fields: [(String, JSONValue)] = [("pipeline", .string(stage.pipeline)), ("stage", .int(stage.position)),
                                                         ("name", .string(stage.name)), ("settings", .string(stage.settings)),
                                                         ("kept", .bool(decision.kept))]
                    if let reason = decision.reason { fields.append(("reason", .string(reason))) }
                    if let score = decision.score { fields.append(("score", .double(score))) }
                    if let matched = decision.matched { fields.append(("matched", .string(matched))) }
                    if let detail = decision.detail, let value = try? JSONValue.parse(detail) { fields.append(("detail", value)) }
                    Output.line(JSONValue.object(fields).compactText)
                } else {
                    let verdict = decision.kept ? "kept" : "dropped"
                    var line = "\(stage.pipeline) stage \(stage.position + 1) (\(stage.name); \(stage.settings)): \(verdict)"
                    if let reason = decision.reason { line += " — \(reason)" }
                    if let matched = decision.matched { line += "; kept in its place: \(matched)" }
                    Output.line(line)
                    if let detail = decision.detail, let value = try? JSONValue.parse(detail) {
                        for text in DetailText.lines(value) { Output.line("    " + text) }
                    }
                }
            }
        }
    }
}

/// The details an LLM stage stored with a decision, as readable lines: the jury's result, then
/// each judge's score or verdict, rationale and cost.
enum DetailText {
    static func lines(_ detail: JSONValue) -> [String] {
        var lines: [String] = []
        var head: [String] = []
        if let score = detail["score"]?.doubleValue { head.append(String(format: "score %.2f", score)) }
        if let normalized = detail["normalized_score"]?.doubleValue { head.append(String(format: "length-normalised %.2f", normalized)) }
        if let verdict = detail["verdict"]?.stringValue { head.append("verdict \(verdict)") }
        if let failure = detail["failure"]?.stringValue { head.append("failed: \(failure)") }
        if let model = detail["model"]?.stringValue { head.append("model \(model)") }
        if let judge = detail["judge"]?.stringValue { head.append("rated by \(judge)") }
        if let cost = detail["cost"]?.doubleValue { head.append(String(format: "$%.5f", cost)) }
        if !head.isEmpty { lines.append(head.joined(separator: ", ")) }
        for evolution in detail["evolutions"]?.arrayValue ?? [] {
            let outcome = evolution["eliminated"]?.stringValue.map { "eliminated (\($0))" } ?? "kept as \(evolution["id"]?.stringValue ?? "?")"
            lines.append("- round \(evolution["round"]?.intValue ?? 0), \(evolution["method"]?.stringValue ?? "?"): \(outcome)")
            lines.append("    " + String((evolution["instruction"]?.stringValue ?? "").prefix(300)))
        }
        let best = detail["best"]?.intValue, rejected = detail["rejected"]?.intValue
        for (index, answer) in (detail["answers"]?.arrayValue ?? []).enumerated() {
            let ratings = (answer["ratings"]?.objectValue ?? []).map { "\($0.0) \($0.1.intValue ?? 0)" }.joined(separator: ", ")
            let role = index == best ? " — best (chosen)" : index == rejected ? " — rejected" : ""
            lines.append(String(format: "- answer %d by %@: mean %.2f (%@)%@", index + 1, answer["model"]?.stringValue ?? "?",
                                answer["mean"]?.doubleValue ?? 0, ratings, role))
            lines.append("    " + String((answer["text"]?.stringValue ?? "").prefix(200)))
        }
        for judge in detail["judges"]?.arrayValue ?? [] {
            var line = "- \(judge["judge"]?.stringValue ?? "judge")"
            if let score = judge["score"]?.doubleValue { line += String(format: ": score %.0f", score) }
            if let verdict = judge["verdict"]?.stringValue {
                let orders = judge["orders"]?.arrayValue?.compactMap(\.stringValue).joined(separator: "/") ?? ""
                line += ": \(verdict)" + (orders.isEmpty ? "" : " (winners by order: \(orders))")
            }
            if let failure = judge["failure"]?.stringValue { line += ": failed — \(failure)" }
            line += String(format: " [%d call%@, $%.5f]", judge["calls"]?.intValue ?? 0, judge["calls"]?.intValue == 1 ? "" : "s",
                           judge["cost"]?.doubleValue ?? 0)
            lines.append(line)
            if let rationale = judge["rationale"]?.stringValue, !rationale.isEmpty {
                lines.append("    " + rationale.replacingOccurrences(of: "\n", with: "\n    "))
            }
        }
        return lines
    }
}
