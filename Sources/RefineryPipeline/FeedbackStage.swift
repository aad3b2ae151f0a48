import Foundation
import RefineryCore
import RefineryCuration
import RefineryData
import RefineryLLM
import RefineryStore

/// UltraFeedback as a curation stage: several models answer each instruction (the sample's own
/// answer among the candidates unless `include_original: false`), a judge rates every answer on
/// instruction following, truthfulness, honesty and helpfulness with rationales, the best-rated
/// answer replaces the sample's, and best vs worst is written to `preferences` as a
/// prompt/chosen/rejected row (the conversational layout TRL's DPO trainer reads).
///
/// ```yaml
/// - feedback:
///     base_url: http://127.0.0.1:8000/v1
///     models: [model-a, model-b]
///     judge: judge-model
///     preferences: data/preferences.jsonl
/// ```
public struct FeedbackStage: CurationStage {
    public static let keys = ["base_url", "models", "judge", "api_key_env", "price_input", "price_output", "include_original", "aspects",
                              "preferences", "temperature", "max_tokens", "max_invalid", "rating_prompt", "answer_system_prompt", "on_failure"]
    public let name = "feedback"
    public var feedback: UltraFeedback
    public var includeOriginal: Bool
    public var preferences: String?
    public var keepFailures: Bool

    init(_ s: ConfigSection) throws {
        let where_ = "\(s.path): \(s.name)"
        let keyEnv = try s.string("api_key_env") ?? "OPENAI_API_KEY"
        let price = try s.price()
        let defaultURL = try s.string("base_url")
        func model(_ raw: Any, label: String) throws -> ChatModel {
            if let name = raw as? String {
                guard let baseURL = defaultURL else { throw PipelineError("\(where_).\(label) needs a base_url (give base_url for the stage, or {model, base_url})") }
                return ChatModel(baseURL: baseURL, model: name, apiKeyEnv: keyEnv, price: price)
            }
            let entry = try ConfigSection(path: s.path, name: "\(s.name).\(label)", raw: raw)
            guard let name = try entry.string("model") else { throw PipelineError("\(s.path): \(entry.name) needs model") }
            guard let baseURL = try entry.string("base_url") ?? defaultURL else { throw PipelineError("\(s.path): \(entry.name) needs base_url") }
            let chat = ChatModel(baseURL: baseURL, model: name, apiKeyEnv: try entry.string("api_key_env") ?? keyEnv,
                                 price: try entry.price(fallback: price),
                                 label: try entry.string("label"))
            try entry.finish(known: ["model", "base_url", "api_key_env", "price_input", "price_output", "label"])
            return chat
        }
        guard let rawModels = try s.list("models"), !rawModels.isEmpty else {
            throw PipelineError("\(where_) needs models: the models that answer each instruction (names, or {model, base_url})")
        }
        let answerers = try rawModels.enumerated().map { try model($0.element, label: "models[\($0.offset)]") }
        guard let rawJudge = try s.raw("judge") else { throw PipelineError("\(where_) needs judge: the model that rates the answers") }
        let judge = try model(rawJudge, label: "judge")
        for chat in answerers + [judge] where !(chat.baseURL.hasPrefix("http://") || chat.baseURL.hasPrefix("https://")) {
            throw PipelineError("\(where_): base_url \(chat.baseURL) must start with http:// or https://")
        }
        guard Set(answerers.map(\.label)).count == answerers.count, !answerers.map(\.label).contains("original") else {
            throw PipelineError("\(where_).models: every answering model needs its own label (and none may be called original)")
        }
        includeOriginal = try s.bool("include_original") ?? true
        guard answerers.count + (includeOriginal ? 1 : 0) >= 2 else {
            throw PipelineError("\(where_): give at least two answering models (or one with include_original: true) — there is nothing to compare")
        }
        var aspects = FeedbackAspect.allCases
        if let names = try s.strings("aspects") {
            aspects = try names.map { name in
                guard let aspect = FeedbackAspect(rawValue: name) else {
                    throw PipelineError("\(where_).aspects: unknown aspect \(name) (aspects: \(FeedbackAspect.allCases.map(\.rawValue).joined(separator: ", ")))")
                }
                return aspect
            }
            guard !aspects.isEmpty else { throw PipelineError("\(where_).aspects is empty") }
        }
        let temperature = try s.double("temperature") ?? 0.7
        guard temperature.isFinite, (0...2).contains(temperature) else { throw PipelineError("\(where_).temperature must be between 0 and 2") }
        let maxTokens = try s.int("max_tokens") ?? 1024
        guard (16...100_000).contains(maxTokens) else { throw PipelineError("\(where_).max_tokens must be between 16 and 100000") }
        let maxInvalid = try s.int("max_invalid") ?? 2
        guard (0...10).contains(maxInvalid) else { throw PipelineError("\(where_).max_invalid must be between 0 and 10") }
        let ratingPrompt = try s.string("rating_prompt") ?? UltraFeedback.defaultRatingPrompt
        for placeholder in ["{aspect}", "{instruction}", "{answers}"] where !ratingPrompt.contains(placeholder) {
            throw PipelineError("\(where_).rating_prompt lacks \(placeholder)")
        }
        feedback = UltraFeedback(answerers: answerers, judge: judge, aspects: aspects,
                                 answerSystem: try s.string("answer_system_prompt") ?? EvolutionPrompts.defaultAnswerSystem,
                                 ratingPrompt: ratingPrompt, temperature: temperature, maxTokens: maxTokens, maxInvalid: maxInvalid)
        preferences = try s.string("preferences")
        switch try s.string("on_failure") ?? "keep" {
        case "drop": keepFailures = false
        case "keep": keepFailures = true
        case let other: throw PipelineError("\(where_).on_failure must be drop or keep, found \(other)")
        }
        try s.finish(known: Self.keys)
    }

    /// The stage from command-line settings (the config's keys and values; `source` names them in errors).
    public static func fromSettings(_ settings: [String: Any], source: String) throws -> FeedbackStage {
        try FeedbackStage(ConfigSection(path: source, name: "feedback", raw: settings))
    }

    public var settingsText: String {
        let prompts = ContentDigest.sha256(feedback.ratingPrompt + "\n" + feedback.answerSystem)
        return ["models=\(feedback.answerers.map { "\($0.model)@\($0.baseURL)" }.joined(separator: ","))",
                "judge=\(feedback.judge.model)@\(feedback.judge.baseURL)", "include_original=\(includeOriginal)",
                "aspects=\(feedback.aspects.map(\.rawValue).joined(separator: ","))", "temperature=\(feedback.temperature)",
                "max_tokens=\(feedback.maxTokens)", "max_invalid=\(feedback.maxInvalid)", "on_failure=\(keepFailures ? "keep" : "drop")",
                "prompts=\(prompts.prefix(16))"].joined(separator: " ")
    }

    public func decide(_ lines: [DatasetLine], store: RunStore?) throws -> [StageDecision] {
        try decide(lines, context: CurationContext(store: store))
    }

    public func decide(_ lines: [DatasetLine], context: CurationContext) throws -> [StageDecision] {
        guard !lines.isEmpty else { return [] }
        let book = try context.requireCalls(for: name)
        let parts = lines.map { SampleParts($0.sample) }
        let rated = lines.indices.filter { !parts[$0].instruction.isEmpty }
        context.report("[feedback] \(rated.count) instructions answered by \(feedback.answerers.map(\.label).joined(separator: ", "))"
                       + "\(includeOriginal ? " and the original" : ""), rated by \(feedback.judge.label)\n")
        let results = try feedback.run(instructions: rated.map { parts[$0].instruction },
                                       own: rated.map { includeOriginal ? parts[$0].answer : nil }, book: book)
        var byLine: [Int: FeedbackResult] = [:]
        for (index, result) in zip(rated, results) { byLine[index] = result }
        var pairs = 0, failures = 0
        let decisions = try lines.indices.map { index -> StageDecision in
            guard let result = byLine[index] else { return StageDecision(kept: true, reason: "no instruction to answer") }
            var fields = result.detail.objectValue ?? []
            fields.insert(("judge", .string(feedback.judge.label)), at: 0)
            let detail = JSONValue.object(fields).compactText
            if let failure = result.failure {
                failures += 1
                return StageDecision(kept: keepFailures, reason: "feedback failed: \(failure)", detail: detail)
            }
            guard let best = result.best else { return StageDecision(kept: true, reason: "no rating", detail: detail) }
            if result.rejected != nil { pairs += 1 }
            let winner = result.answers[best]
            let score = winner.mean
            let reason = String(format: "best answer: %@ (mean rating %.2f)", winner.model, score ?? 0)
            guard winner.model != "original" else { return StageDecision(kept: true, reason: reason, score: score, detail: detail) }
            let row = try SampleRewrite.replacingAnswer(of: lines[index], with: winner.text).compactText
            return StageDecision(kept: true, reason: reason, score: score, detail: detail, outputRows: [row])
        }
        context.report("[feedback] \(results.count - failures) rated, \(failures) failed, \(pairs) preference pairs\n")
        return decisions
    }

    /// Writes the preference pairs (from the decisions' details, so also when they were reused).
    public func finish(_ lines: [DatasetLine], decisions: [StageDecision], report: ProgressReport) throws {
        guard let preferences else { return }
        let ids = SampleIDs.of(lines)
        var rows: [String] = []
        for (index, decision) in decisions.enumerated() {
            guard let text = decision.detail, let detail = try? JSONValue.parse(text), let best = detail["best"]?.intValue,
                  let rejected = detail["rejected"]?.intValue, let answers = detail["answers"]?.arrayValue,
                  answers.indices.contains(best), answers.indices.contains(rejected) else { continue }
            var prompt: [JSONValue] = []
            if case let .chat(turns) = lines[index].sample, let system = turns.first, system.role == "system" {
                prompt.append(.object([("role", .string("system")), ("content", .string(system.content))]))
            }
            prompt.append(.object([("role", .string("user")), ("content", .string(SampleParts(lines[index].sample).instruction))]))
            func turn(_ answer: JSONValue) -> JSONValue {
                .array([.object([("role", .string("assistant")), ("content", .string(answer["text"]?.stringValue ?? ""))])])
            }
            rows.append(JSONValue.object([
                ("prompt", .array(prompt)), ("chosen", turn(answers[best])), ("rejected", turn(answers[rejected])),
                ("score_chosen", answers[best]["mean"] ?? .null), ("score_rejected", answers[rejected]["mean"] ?? .null),
                ("chosen_model", answers[best]["model"] ?? .null), ("rejected_model", answers[rejected]["model"] ?? .null),
                ("lineage", .object([("id", .string(ids[index]))])),
            ]).compactText)
        }
        try DatasetLines.write(rows, to: preferences)
        report("[feedback] wrote \(rows.count) preference pairs (prompt/chosen/rejected) → \(preferences)\n")
    }
}
