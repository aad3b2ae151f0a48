import Foundation
import RefineryCore
import RefineryCuration
import RefineryData
import RefineryLLM
import RefineryStore
import RefineryText

/// Self-instruct synthesis as a curation stage: new instructions from seed tasks (a `seeds` file,
/// or the dataset's own instructions), each kept only when its ROUGE-L with everything already in
/// the pool stays under `max_similarity`, then answered; the new samples follow the dataset. With
/// `topics` and `task_types`, every prompt names one cell of that taxonomy in turn.
///
/// ```yaml
/// - synthesize: {base_url: http://127.0.0.1:8000/v1, model: gpt-4o-mini, count: 200}
/// - synthesize: {base_url: …, model: …, count: 100, seeds: data/seed_tasks.jsonl, topics: [biology, law], task_types: [explain, compare]}
/// ```
public struct SynthesizeStage: CurationStage {
    public static let keys = ["base_url", "model", "api_key_env", "price_input", "price_output", "count", "seeds", "per_prompt", "examples",
                              "prompts_per_round", "max_rounds", "max_similarity", "topics", "task_types", "seed", "temperature", "max_tokens",
                              "prompt", "answer_system_prompt"]
    public let name = "synthesize"
    public var synthesis: SelfInstruct
    /// A file of seed tasks; nil: the dataset's own instructions.
    public var seeds: String?

    init(_ s: ConfigSection) throws {
        let where_ = "\(s.path): \(s.name)"
        guard let baseURL = try s.string("base_url"), baseURL.hasPrefix("http://") || baseURL.hasPrefix("https://") else {
            throw PipelineError("\(where_) needs base_url: an OpenAI-compatible endpoint up to /v1 (http:// or https://)")
        }
        guard let model = try s.string("model") else { throw PipelineError("\(where_) needs model") }
        guard let count = try s.int("count"), (1...1_000_000).contains(count) else {
            throw PipelineError("\(where_) needs count: how many new tasks to make (1 to 1000000)")
        }
        func bounded(_ key: String, _ fallback: Int, _ range: ClosedRange<Int>) throws -> Int {
            let value = try s.int(key) ?? fallback
            guard range.contains(value) else { throw PipelineError("\(where_).\(key) must be between \(range.lowerBound) and \(range.upperBound), found \(value)") }
            return value
        }
        let similarity = try s.double("max_similarity") ?? 0.7
        guard similarity > 0, similarity <= 1 else { throw PipelineError("\(where_).max_similarity must be in (0, 1], found \(similarity)") }
        let topics = try s.strings("topics"), types = try s.strings("task_types")
        guard (topics == nil) == (types == nil), topics?.isEmpty != true, types?.isEmpty != true else {
            throw PipelineError("\(where_): give both topics and task_types (non-empty lists) for a taxonomy, or neither")
        }
        let temperature = try s.double("temperature") ?? 1.0
        guard temperature.isFinite, (0...2).contains(temperature) else { throw PipelineError("\(where_).temperature must be between 0 and 2") }
        let prompt = try s.string("prompt") ?? SelfInstruct.defaultPrompt
        for placeholder in ["{count}", "{examples}"] where !prompt.contains(placeholder) { throw PipelineError("\(where_).prompt lacks \(placeholder)") }
        let generator = ChatModel(baseURL: baseURL, model: model, apiKeyEnv: try s.string("api_key_env") ?? "OPENAI_API_KEY",
                                  price: try s.price())
        synthesis = SelfInstruct(generator: generator, count: count, perPrompt: try bounded("per_prompt", 5, 1...20),
                                 examplesPerPrompt: try bounded("examples", 4, 1...20), promptsPerRound: try bounded("prompts_per_round", 8, 1...1000),
                                 maxRounds: try bounded("max_rounds", 50, 1...100_000), maxSimilarity: similarity,
                                 taxonomy: topics.flatMap { topics in types.map { TaskTaxonomy(topics: topics, taskTypes: $0) } },
                                 seed: try s.seed("seed") ?? 0, temperature: temperature, maxTokens: try bounded("max_tokens", 1024, 16...100_000),
                                 answerSystem: try s.string("answer_system_prompt") ?? EvolutionPrompts.defaultAnswerSystem, prompt: prompt)
        seeds = try s.string("seeds")
        try s.finish(known: Self.keys)
    }

    /// The stage from command-line settings (the config's keys and values; `source` names them in errors).
    public static func fromSettings(_ settings: [String: Any], source: String) throws -> SynthesizeStage {
        try SynthesizeStage(ConfigSection(path: source, name: "synthesize", raw: settings))
    }

    public var settingsText: String {
        get throws {
            let s = synthesis
            var parts = ["model=\(s.generator.model)@\(s.generator.baseURL)", "count=\(s.count)", "per_prompt=\(s.perPrompt)", "examples=\(s.examplesPerPrompt)",
                         "prompts_per_round=\(s.promptsPerRound)", "max_rounds=\(s.maxRounds)", "max_similarity=\(s.maxSimilarity)", "seed=\(s.seed)",
                         "temperature=\(s.temperature)", "max_tokens=\(s.maxTokens)",
                         "prompt=\(ContentDigest.sha256(s.prompt + "\n" + s.answerSystem).prefix(16))"]
            if let taxonomy = s.taxonomy { parts.append("taxonomy=\(ContentDigest.sha256((taxonomy.topics + ["|"] + taxonomy.taskTypes).joined(separator: "\n")).prefix(16))") }
            if let seeds { parts.append("seeds=\(ContentDigest.sha256(bytes: try Self.contents(of: seeds)).prefix(16))") }
            return parts.joined(separator: " ")
        }
    }

    static func contents(of path: String) throws -> Data {
        guard let data = FileManager.default.contents(atPath: path) else { throw PipelineError("cannot read the seed tasks \(path)") }
        return data
    }

    /// The instructions of a seed file: each line's `instruction` field, or the user turns of a sample in any supported format.
    public static func seedInstructions(_ path: String) throws -> [String] {
        var seeds: [String] = []
        let reader = DatasetReader()
        try LineReader.forEachLine(path: path) { line, number in
            guard case let .object(fields) = try JSONValue.parse(line) else { throw PipelineError("\(path):\(number): a seed task must be a JSON object") }
            if let instruction = fields.first(where: { $0.0 == "instruction" })?.1.stringValue, !instruction.isEmpty {
                seeds.append(instruction)
            } else {
                let instruction = SampleParts(try reader.parse(line: line, lineNumber: number, source: path)).instruction
                guard !instruction.isEmpty else { throw PipelineError("\(path):\(number): no instruction in this seed task") }
                seeds.append(instruction)
            }
        }
        guard !seeds.isEmpty else { throw PipelineError("\(path) holds no seed tasks") }
        return seeds
    }

    /// Synthesizes from `seeds`; the new samples as rows, with the tally.
    public func synthesize(seeds: [String], book: LLMCallBook, report: @escaping ProgressReport) throws -> (rows: [String], tally: SynthesisTally) {
        guard !seeds.isEmpty else { throw PipelineError("synthesis needs at least one seed task") }
        let (tasks, tally) = try synthesis.run(seeds: seeds, book: book) { report($0 + "\n") }
        let rows = tasks.enumerated().map { index, task -> String in
            var lineage: [(String, JSONValue)] = [("id", .string("synth-\(synthesis.seed)-\(index + 1)")), ("round", .int(task.round)),
                                                 ("synthesized_from", .array(task.examples.map { .string($0) })),
                                                 ("closest_rouge_l", .double((task.closest * 10_000).rounded() / 10_000))]
            if let topic = task.topic { lineage.append(("topic", .string(topic))) }
            if let type = task.taskType { lineage.append(("task_type", .string(type))) }
            return JSONValue.object([
                ("messages", .array([.object([("role", .string("user")), ("content", .string(task.instruction))]),
                                     .object([("role", .string("assistant")), ("content", .string(task.answer))])])),
                ("lineage", .object(lineage)),
            ]).compactText
        }
        return (rows, tally)
    }

    public func decide(_ lines: [DatasetLine], store: RunStore?) throws -> [StageDecision] {
        try decide(lines, context: CurationContext(store: store))
    }

    /// Every sample is kept; the new samples are stored with the last one (so reruns reuse them).
    public func decide(_ lines: [DatasetLine], context: CurationContext) throws -> [StageDecision] {
        guard !lines.isEmpty else { return [] }
        let book = try context.requireCalls(for: name)
        let pool = try seeds.map(Self.seedInstructions) ?? lines.map { SampleParts($0.sample).instruction }.filter { !$0.isEmpty }
        let (rows, tally) = try synthesize(seeds: pool, book: book, report: context.report)
        context.report("[synthesize] \(rows.count) new tasks from \(pool.count) seeds (\(tally.proposed) proposed: \(tally.tooSimilar) too similar, "
                       + "\(tally.badLength + tally.unsuitable) unsuitable, \(tally.unanswered) unanswered)\n")
        var decisions = lines.map { _ in StageDecision(kept: true) }
        let detail = JSONValue.object([("synthesized", .int(rows.count)), ("proposed", .int(tally.proposed)), ("too_similar", .int(tally.tooSimilar)),
                                       ("unsuitable", .int(tally.unsuitable + tally.badLength)), ("unanswered", .int(tally.unanswered))])
        decisions[lines.count - 1] = StageDecision(kept: true, reason: "followed by \(rows.count) synthesized samples", detail: detail.compactText,
                                                   outputRows: [lines[lines.count - 1].row] + rows)
        return decisions
    }
}
