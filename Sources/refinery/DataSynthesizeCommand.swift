import ArgumentParser
import Foundation
import RefineryCore
import RefineryData
import RefineryPipeline

/// `refinery data synthesize`: self-instruct from seed tasks.
struct DataSynthesizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "synthesize",
        abstract: "Make new instruction–answer samples from seed tasks (self-instruct), keeping only novel instructions (ROUGE-L).",
        discussion: """
        Each prompt shows --examples instructions from the pool (seed tasks, and from the second \
        round some generated ones) and asks for --per-prompt new ones; a candidate is kept when its \
        ROUGE-L F (rouge-score's, no stemmer) with every instruction already in the pool is below \
        --max-similarity, is 3 to 150 words and needs no image, file or audio; then it is \
        answered. With --topic and --task-type (repeatable) or --taxonomy FILE ({"topics": […], \
        "task_types": […]}), every prompt names one topic and task type in turn. Rows carry their \
        lineage (round, the examples shown, topic, task type, closest ROUGE-L). Every call is kept \
        in the state file: run again after a kill and only calls never answered are made.
        """)

    @Option(help: "Seed tasks: JSONL with an \"instruction\" per line, or samples in any supported format.") var seeds: String
    @Option(help: "Output JSONL of the new samples.") var output: String
    @Option(help: "How many new samples to make.") var count: Int
    @Option(help: "OpenAI-compatible endpoint up to /v1.") var baseURL: String
    @Option(help: "The model that writes instructions and answers.") var model: String
    @Option(help: "Environment variable holding the API key.") var apiKeyEnv: String = "OPENAI_API_KEY"
    @Option(help: "New instructions asked for per prompt.") var perPrompt: Int = 5
    @Option(help: "Pool instructions shown per prompt.") var examples: Int = 4
    @Option(help: "Prompts per round.") var promptsPerRound: Int = 8
    @Option(help: "Rounds at most.") var maxRounds: Int = 50
    @Option(help: "Drop a candidate whose ROUGE-L F with anything in the pool reaches this.") var maxSimilarity: Double = 0.7
    @Option(help: "A topic of the taxonomy (repeatable; needs --task-type).") var topic: [String] = []
    @Option(help: "A task type of the taxonomy (repeatable; needs --topic).") var taskType: [String] = []
    @Option(help: "A JSON file {\"topics\": [...], \"task_types\": [...]}.") var taxonomy: String?
    @Option(help: "Seed of the example draws.") var seed: Int = 0
    @Option(help: "Dollars per million prompt tokens.") var priceInput: Double = 0
    @Option(help: "Dollars per million completion tokens.") var priceOutput: Double = 0
    @OptionGroup var calls: LLMCallOptions

    func run() throws {
        try reportingErrors {
            var settings: [String: Any] = ["base_url": baseURL, "model": model, "api_key_env": apiKeyEnv, "count": count, "per_prompt": perPrompt,
                                           "examples": examples, "prompts_per_round": promptsPerRound, "max_rounds": maxRounds,
                                           "max_similarity": maxSimilarity, "seed": seed, "price_input": priceInput, "price_output": priceOutput]
            var topics = topic, types = taskType
            if let taxonomy {
                guard let data = FileManager.default.contents(atPath: taxonomy), let json = try? JSONValue.parse(bytes: Array(data)) else {
                    throw CommandError("--taxonomy \(taxonomy): not a readable JSON file")
                }
                guard let t = json["topics"]?.arrayValue?.compactMap(\.stringValue), let k = json["task_types"]?.arrayValue?.compactMap(\.stringValue) else {
                    throw CommandError("--taxonomy \(taxonomy): expected {\"topics\": [...], \"task_types\": [...]} (lists of strings)")
                }
                topics += t
                types += k
            }
            if !topics.isEmpty || !types.isEmpty {
                settings["topics"] = topics
                settings["task_types"] = types
            }
            let stage = try SynthesizeStage.fromSettings(settings, source: "refinery data synthesize")
            let pool = try SynthesizeStage.seedInstructions(seeds)
            let (store, book) = try calls.book(output: output)
            let (rows, tally) = try stage.synthesize(seeds: pool, book: book, report: { Output.progress($0) })
            try DatasetLines.write(rows, to: output)
            Output.line("synthesized \(rows.count) samples from \(pool.count) seed tasks (\(tally.proposed) proposed: \(tally.tooSimilar) too similar, "
                        + "\(tally.badLength + tally.unsuitable) unsuitable, \(tally.unanswered) unanswered) → \(output); calls kept in \(store.path)")
            if rows.count < count { Output.line("fewer than --count: raise --max-rounds or --max-similarity, or give more varied seeds") }
        }
    }
}
