import Foundation
import RefineryCore
import RefineryCuration
import RefineryData
import RefineryLLM
import RefineryStore

/// An LLM judge (or a jury) as a curation stage. Rubric: every sample gets the jury's score, and
/// those under `min_score` are dropped. Pairwise: the sample's answer is compared with the answer
/// in its `candidate` field in both orders, and the winner stays (a tie keeps the sample's own).
/// Each sample's scores, verdicts, rationales, judges and cost are stored with its decision.
///
/// ```yaml
/// - judge: {base_url: http://127.0.0.1:8000/v1, model: judge-model, min_score: 3}
/// - judge:
///     judges: [{base_url: …, model: judge-a}, {base_url: …, model: judge-b}]
///     aggregate: median
///     human: human_score
/// - judge: {mode: pairwise, base_url: …, model: judge-model, candidate: other_answer}
/// ```
public struct JudgeStage: CurationStage {
    public static let keys = ["mode", "base_url", "model", "api_key_env", "price_input", "price_output", "judges", "aggregate", "min_score",
                              "length_normalize", "candidate", "human", "max_invalid", "temperature", "max_tokens", "system_prompt",
                              "prompt", "scale", "on_failure"]
    public static let judgeKeys = ["base_url", "model", "api_key_env", "price_input", "price_output", "label"]
    public let name = "judge"
    public var judge: LLMJudge
    public var minScore: Double?
    public var candidateField: String?
    public var humanField: String?
    /// Keep samples whose judgment failed (default: drop them; they cannot show they pass).
    public var keepFailures: Bool

    init(_ s: ConfigSection) throws {
        let where_ = "\(s.path): \(s.name)"
        guard let mode = JudgeMode(rawValue: try s.string("mode") ?? "rubric") else {
            throw PipelineError("\(where_).mode must be rubric or pairwise")
        }
        let keyEnv = try s.string("api_key_env") ?? "OPENAI_API_KEY"
        let price = try s.price()
        var judges: [JudgeModel] = []
        if let list = try s.mappings("judges") {
            for (index, raw) in list.enumerated() {
                let entry = try ConfigSection(path: s.path, name: "\(s.name).judges[\(index)]", raw: raw)
                guard let model = try entry.string("model") else { throw PipelineError("\(s.path): \(entry.name) needs model") }
                guard let baseURL = try entry.string("base_url") ?? s.string("base_url") else {
                    throw PipelineError("\(s.path): \(entry.name) needs base_url (or give base_url for the whole stage)")
                }
                let entryPrice = try entry.price(fallback: price)
                judges.append(JudgeModel(baseURL: baseURL, model: model, apiKeyEnv: try entry.string("api_key_env") ?? keyEnv, price: entryPrice,
                                         label: try entry.string("label")))
                try entry.finish(known: Self.judgeKeys)
            }
            guard try s.string("model") == nil else { throw PipelineError("\(where_): give either model or judges, not both") }
        } else if let model = try s.string("model") {
            guard let baseURL = try s.string("base_url") else { throw PipelineError("\(where_) needs base_url (an OpenAI-compatible endpoint up to /v1)") }
            judges = [JudgeModel(baseURL: baseURL, model: model, apiKeyEnv: keyEnv, price: price)]
        } else {
            throw PipelineError("\(where_) needs model (one judge) or judges (a jury: a list of {base_url, model})")
        }
        // A judge twice would only count its opinion twice; two judges with one label would be
        // indistinguishable in the records.
        guard Set(judges.map { "\($0.model)\n\($0.baseURL)" }).count == judges.count else {
            throw PipelineError("\(where_): two judges are the same model at the same endpoint")
        }
        var seen: Set<String> = []
        for index in judges.indices {
            if seen.contains(judges[index].label) { judges[index].label = "\(judges[index].model)@\(judges[index].baseURL)" }
            guard seen.insert(judges[index].label).inserted else { throw PipelineError("\(where_): two judges share the label \(judges[index].label)") }
        }
        for judge in judges where !(judge.baseURL.hasPrefix("http://") || judge.baseURL.hasPrefix("https://")) {
            throw PipelineError("\(where_): base_url \(judge.baseURL) must start with http:// or https://")
        }
        guard let aggregate = JuryAggregate(rawValue: try s.string("aggregate") ?? "mean") else {
            throw PipelineError("\(where_).aggregate must be mean, median or majority")
        }
        let scaleMax = try s.int("scale") ?? 4
        guard (2...100).contains(scaleMax) else { throw PipelineError("\(where_).scale (the best score) must be between 2 and 100, found \(scaleMax)") }
        let maxInvalid = try s.int("max_invalid") ?? 2
        guard (0...10).contains(maxInvalid) else { throw PipelineError("\(where_).max_invalid must be between 0 and 10") }
        let temperature = try s.double("temperature") ?? 0
        guard temperature.isFinite, (0...2).contains(temperature) else { throw PipelineError("\(where_).temperature must be between 0 and 2") }
        let maxTokens = try s.int("max_tokens") ?? 512
        guard (16...100_000).contains(maxTokens) else { throw PipelineError("\(where_).max_tokens must be between 16 and 100000") }
        var prompt: JudgePrompt? = nil
        if let user = try s.string("prompt") {
            prompt = JudgePrompt(system: try s.string("system_prompt") ?? (mode == .rubric ? JudgePrompt.rubric() : JudgePrompt.pairwise).system, user: user)
        } else if let system = try s.string("system_prompt") {
            var base = mode == .rubric ? JudgePrompt.rubric(scale: 1...scaleMax) : JudgePrompt.pairwise
            base.system = system
            prompt = base
        }
        if let prompt, !prompt.missingPlaceholders(for: mode).isEmpty {
            throw PipelineError("\(where_).prompt lacks \(prompt.missingPlaceholders(for: mode).joined(separator: ", ")) (a \(mode.rawValue) prompt needs them)")
        }
        judge = LLMJudge(mode: mode, judges: judges, prompt: prompt, scale: 1...scaleMax, aggregate: aggregate, maxInvalid: maxInvalid,
                         temperature: temperature, maxTokens: maxTokens, lengthNormalize: try s.bool("length_normalize") ?? false)
        minScore = try s.double("min_score")
        if let minScore, !minScore.isFinite { throw PipelineError("\(where_).min_score must be a number") }
        candidateField = try s.string("candidate")
        if mode == .pairwise {
            guard candidateField != nil else { throw PipelineError("\(where_): pairwise judging needs candidate: the field holding the answer to compare with") }
            guard minScore == nil else { throw PipelineError("\(where_): min_score applies to rubric judging; a comparison keeps the winner") }
        }
        humanField = try s.string("human")
        switch try s.string("on_failure") ?? "drop" {
        case "drop": keepFailures = false
        case "keep": keepFailures = true
        case let other: throw PipelineError("\(where_).on_failure must be drop or keep, found \(other)")
        }
        try s.finish(known: Self.keys)
    }

    /// The stage from command-line settings (the config's keys and values; `source` names them in errors).
    public static func fromSettings(_ settings: [String: Any], source: String) throws -> JudgeStage {
        try JudgeStage(ConfigSection(path: source, name: "judge", raw: settings))
    }

    public var settingsText: String {
        let judges = judge.judges.map { "\($0.model)@\($0.baseURL)" }.joined(separator: ",")
        return ["mode=\(judge.mode.rawValue)", "judges=\(judges)", "aggregate=\(judge.aggregate.rawValue)", "scale=\(judge.scale.upperBound)",
                "min_score=\(minScore.map { "\($0)" } ?? "-")", "length_normalize=\(judge.lengthNormalize)", "candidate=\(candidateField ?? "-")",
                "max_invalid=\(judge.maxInvalid)", "temperature=\(judge.temperature)", "max_tokens=\(judge.maxTokens)",
                "prompt=\(ContentDigest.sha256(judge.prompt.system + "\n" + judge.prompt.user).prefix(16))",
                "on_failure=\(keepFailures ? "keep" : "drop")"].joined(separator: " ")
    }

    public func decide(_ lines: [DatasetLine], store: RunStore?) throws -> [StageDecision] {
        try decide(lines, context: CurationContext(store: store))
    }

    public func decide(_ lines: [DatasetLine], context: CurationContext) throws -> [StageDecision] {
        guard !lines.isEmpty else { return [] }
        let book = try context.requireCalls(for: name)
        let rows = try lines.map { line -> [(String, JSONValue)] in
            guard case let .object(fields) = try JSONValue.parse(line.row) else { throw PipelineError("line \(line.lineNumber): a sample must be a JSON object") }
            return fields
        }
        let items = try zip(lines, rows).map { line, fields -> JudgeItem in
            let parts = SampleParts(line.sample)
            var candidate: String? = nil
            if let field = candidateField {
                guard let value = fields.first(where: { $0.0 == field })?.1.stringValue else {
                    throw PipelineError("line \(line.lineNumber): no \"\(field)\" text to compare the answer with (judge.candidate)")
                }
                candidate = value
            }
            return JudgeItem(instruction: parts.instruction, answer: parts.answer, candidate: candidate)
        }
        context.report("[judge] \(judge.mode.rawValue) judging of \(items.count) samples by \(judge.judges.map(\.label).joined(separator: ", "))\n")
        let judgments = try judge.judge(items, book: book)
        reportAgreement(judgments, rows: rows, report: context.report)
        return try zip(zip(lines, rows), judgments).map { pair, judgment in
            let (line, fields) = pair
            let detail = judgment.detail.compactText
            if let failure = judgment.failure {
                return StageDecision(kept: keepFailures, reason: "the judge failed: \(failure)", detail: detail)
            }
            if judge.mode == .pairwise {
                let verdict = judgment.verdict ?? "tie"
                var output: [String]? = nil
                if verdict == "candidate", let field = candidateField, let candidate = fields.first(where: { $0.0 == field })?.1.stringValue {
                    output = [try SampleRewrite.replacingAnswer(of: line, with: candidate).compactText]
                }
                return StageDecision(kept: true, reason: "pairwise verdict: \(verdict)", detail: detail, outputRows: output)
            }
            let score = judgment.effectiveScore ?? 0
            if let minScore, score < minScore {
                return StageDecision(kept: false, reason: String(format: "judge score %.2f below the minimum %.2f", score, minScore), score: score, detail: detail)
            }
            return StageDecision(kept: true, score: score, detail: detail)
        }
    }

    /// Prints how far the judges agree with each other and with the human labels (if any).
    func reportAgreement(_ judgments: [Judgment], rows: [[(String, JSONValue)]], report: ProgressReport) {
        let names = judge.judges.map(\.label)
        let labels: [[String?]] = names.indices.map { j in
            judgments.map { judgment in
                let opinion = judgment.opinions[j]
                return opinion.score.map { String(Int($0)) } ?? opinion.verdict
            }
        }
        let jury = judgments.map { $0.score.map { String(Int($0.rounded())) } ?? $0.verdict }
        let human = humanField.map { field in
            rows.map { fields -> String? in
                guard let value = fields.first(where: { $0.0 == field })?.1 else { return nil }
                if let number = value.doubleValue { return String(Int(number.rounded())) }
                return value.stringValue
            }
        }
        let agreement = JuryAgreement(judges: names, labels: labels, jury: jury, human: human)
        for line in agreement.lines { report("[judge] \(line)\n") }
        let failed = judgments.filter { $0.failure != nil }.count
        let cost = judgments.map(\.cost).reduce(0, +)
        report(String(format: "[judge] %d judged, %d failed, $%.4f of calls\n", judgments.count - failed, failed, cost))
    }
}

/// Rows rewritten with another answer, in the row's own format.
enum SampleRewrite {
    /// `line`'s row with its (last) answer replaced: the last assistant message, alpaca's
    /// `output`, ShareGPT's last `gpt` turn or oasst's `RESPONSE`; other fields unchanged.
    static func replacingAnswer(of line: DatasetLine, with answer: String) throws -> JSONValue {
        guard case var .object(fields) = try JSONValue.parse(line.row) else { throw PipelineError("line \(line.lineNumber): a sample must be a JSON object") }
        func replaceLast(in key: String, roleKey: String, role: String, contentKey: String) -> Bool {
            guard let index = fields.firstIndex(where: { $0.0 == key }), case var .array(turns) = fields[index].1,
                  let last = turns.lastIndex(where: { $0[roleKey]?.stringValue == role }), case var .object(turn) = turns[last],
                  let content = turn.firstIndex(where: { $0.0 == contentKey }) else { return false }
            turn[content].1 = .string(answer)
            turns[last] = .object(turn)
            fields[index].1 = .array(turns)
            return true
        }
        if replaceLast(in: "messages", roleKey: "role", role: "assistant", contentKey: "content") { return .object(fields) }
        if replaceLast(in: "conversations", roleKey: "from", role: "gpt", contentKey: "value") { return .object(fields) }
        for key in ["output", "RESPONSE", "answer", "response"] {
            if let index = fields.firstIndex(where: { $0.0 == key }) {
                fields[index].1 = .string(answer)
                return .object(fields)
            }
        }
        throw PipelineError("line \(line.lineNumber): the row has no answer field to replace (messages, conversations, output, RESPONSE)")
    }
}
