import Foundation
import RefineryCore
import RefineryCuration
import RefineryData
import RefineryLLM
import RefineryStore

/// Evol-Instruct as a curation stage: each sample's instruction is evolved for `rounds`
/// generations, the answer regenerated for every evolved instruction, failed evolutions
/// eliminated by the stated rules; the survivors follow their original (or replace it with
/// `keep_original: false`), each with its lineage (`evolved_from`, `parent`, `round`, `method`).
///
/// ```yaml
/// - evolve: {base_url: http://127.0.0.1:8000/v1, model: gpt-4o-mini, rounds: 2}
/// - evolve: {base_url: …, model: …, methods: [deepen, add_constraints, breadth], keep_original: false}
/// ```
public struct EvolveStage: CurationStage {
    public static let keys = ["base_url", "model", "api_key_env", "price_input", "price_output", "rounds", "methods", "seed", "temperature",
                              "max_tokens", "keep_original", "min_answer_words", "rewrite_prompt", "equality_prompt", "answer_system_prompt"]
    public let name = "evolve"
    public var evol: EvolInstruct
    public var keepOriginal: Bool

    init(_ s: ConfigSection) throws {
        let where_ = "\(s.path): \(s.name)"
        guard let baseURL = try s.string("base_url"), baseURL.hasPrefix("http://") || baseURL.hasPrefix("https://") else {
            throw PipelineError("\(where_) needs base_url: an OpenAI-compatible endpoint up to /v1 (http:// or https://)")
        }
        guard let model = try s.string("model") else { throw PipelineError("\(where_) needs model") }
        let rounds = try s.int("rounds") ?? 1
        guard (1...10).contains(rounds) else { throw PipelineError("\(where_).rounds must be between 1 and 10, found \(rounds)") }
        var methods = EvolutionMethod.allCases
        if let names = try s.strings("methods") {
            methods = try names.map { name in
                guard let method = EvolutionMethod(rawValue: name) else {
                    throw PipelineError("\(where_).methods: unknown method \(name) (methods: \(EvolutionMethod.allCases.map(\.rawValue).joined(separator: ", ")))")
                }
                return method
            }
            guard !methods.isEmpty else { throw PipelineError("\(where_).methods is empty") }
        }
        let temperature = try s.double("temperature") ?? 0.7
        guard temperature.isFinite, (0...2).contains(temperature) else { throw PipelineError("\(where_).temperature must be between 0 and 2") }
        let maxTokens = try s.int("max_tokens") ?? 1024
        guard (16...100_000).contains(maxTokens) else { throw PipelineError("\(where_).max_tokens must be between 16 and 100000") }
        let minWords = try s.int("min_answer_words") ?? 3
        guard (0...10_000).contains(minWords) else { throw PipelineError("\(where_).min_answer_words must be between 0 and 10000") }
        var prompts = EvolutionPrompts()
        if let rewrite = try s.string("rewrite_prompt") {
            guard rewrite.contains("{instruction}"), rewrite.contains("{method}") else {
                throw PipelineError("\(where_).rewrite_prompt must hold {method} and {instruction}")
            }
            prompts.rewrite = rewrite
        }
        if let equality = try s.string("equality_prompt") {
            guard equality.contains("{first}"), equality.contains("{second}") else { throw PipelineError("\(where_).equality_prompt must hold {first} and {second}") }
            prompts.equality = equality
        }
        if let system = try s.string("answer_system_prompt") { prompts.answerSystem = system }
        evol = EvolInstruct(baseURL: baseURL, model: model, apiKeyEnv: try s.string("api_key_env") ?? "OPENAI_API_KEY",
                            price: try s.price(),
                            rounds: rounds, methods: methods, prompts: prompts, seed: try s.seed("seed") ?? 0, temperature: temperature,
                            maxTokens: maxTokens, minAnswerWords: minWords)
        keepOriginal = try s.bool("keep_original") ?? true
        try s.finish(known: Self.keys)
    }

    /// The stage from command-line settings (the config's keys and values; `source` names them in errors).
    public static func fromSettings(_ settings: [String: Any], source: String) throws -> EvolveStage {
        try EvolveStage(ConfigSection(path: source, name: "evolve", raw: settings))
    }

    public var settingsText: String {
        let prompts = ContentDigest.sha256([evol.prompts.rewrite, evol.prompts.equality, evol.prompts.answerSystem].joined(separator: "\n"))
        return ["model=\(evol.model)@\(evol.baseURL)", "rounds=\(evol.rounds)", "methods=\(evol.methods.map(\.rawValue).joined(separator: ","))",
                "seed=\(evol.seed)", "temperature=\(evol.temperature)", "max_tokens=\(evol.maxTokens)", "min_answer_words=\(evol.minAnswerWords)",
                "keep_original=\(keepOriginal)", "prompts=\(prompts.prefix(16))"].joined(separator: " ")
    }

    public func decide(_ lines: [DatasetLine], store: RunStore?) throws -> [StageDecision] {
        try decide(lines, context: CurationContext(store: store))
    }

    public func decide(_ lines: [DatasetLine], context: CurationContext) throws -> [StageDecision] {
        guard !lines.isEmpty else { return [] }
        let book = try context.requireCalls(for: name)
        let ids = SampleIDs.of(lines)
        let parts = lines.map { SampleParts($0.sample) }
        let evolvable = lines.indices.filter { !parts[$0].instruction.isEmpty }
        context.report("[evolve] \(evolvable.count) instructions, \(evol.rounds) round\(evol.rounds == 1 ? "" : "s") with \(evol.model)\n")
        let histories = try evol.evolve(evolvable.map { parts[$0].instruction }, keys: evolvable.map { ids[$0] }, book: book)
        var byLine: [Int: [Evolution]] = [:]
        for (index, history) in zip(evolvable, histories) { byLine[index] = history }
        var survived = 0, eliminated: [String: Int] = [:]
        let decisions = try lines.indices.map { index -> StageDecision in
            guard let history = byLine[index] else { return StageDecision(kept: true, reason: "no instruction to evolve") }
            var rows = keepOriginal ? [lines[index].row] : []
            var parent = ids[index]
            var rounds: [JSONValue] = []
            for evolution in history {
                var record: [(String, JSONValue)] = [("round", .int(evolution.round)), ("method", .string(evolution.method.rawValue)),
                                                     ("instruction", .string(evolution.instruction)), ("cost", .double(evolution.cost))]
                if let rule = evolution.eliminated {
                    record.append(("eliminated", .string(rule.rawValue)))
                    eliminated[rule.rawValue, default: 0] += 1
                } else if let answer = evolution.answer {
                    let id = "\(ids[index])/evol\(evolution.round)"
                    rows.append(try Self.row(of: lines[index], instruction: evolution.instruction, answer: answer, lineage: [
                        ("id", .string(id)), ("evolved_from", .string(ids[index])), ("parent", .string(parent)),
                        ("round", .int(evolution.round)), ("method", .string(evolution.method.rawValue)),
                    ]).compactText)
                    parent = id
                    survived += 1
                    record.append(("id", .string(id)))
                }
                rounds.append(.object(record))
            }
            if rows.isEmpty { rows = [lines[index].row] }  // nothing survived: the original stays
            let kept = history.filter { $0.eliminated == nil }.count
            let detail = JSONValue.object([("model", .string(evol.model)), ("evolutions", .array(rounds)),
                                           ("cost", .double(history.map(\.cost).reduce(0, +)))])
            return StageDecision(kept: true, reason: "\(kept) of \(history.count) evolution\(history.count == 1 ? "" : "s") survived",
                                 detail: detail.compactText, outputRows: rows)
        }
        let summary = eliminated.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", ")
        context.report("[evolve] \(survived) evolved samples survived; eliminated: \(summary.isEmpty ? "none" : summary)\n")
        return decisions
    }

    /// A conversation row for an evolved instruction and its answer (the original's system prompt kept).
    static func row(of original: DatasetLine, instruction: String, answer: String, lineage: [(String, JSONValue)]) throws -> JSONValue {
        var messages: [JSONValue] = []
        if case let .chat(turns) = original.sample, let system = turns.first, system.role == "system" {
            messages.append(.object([("role", .string("system")), ("content", .string(system.content))]))
        }
        messages.append(.object([("role", .string("user")), ("content", .string(instruction))]))
        messages.append(.object([("role", .string("assistant")), ("content", .string(answer))]))
        return .object([("messages", .array(messages)), ("lineage", .object(lineage))])
    }
}
