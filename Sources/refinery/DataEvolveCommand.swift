import ArgumentParser
import Foundation
import RefineryCore
import RefineryData
import RefineryPipeline

/// `refinery data evolve`: Evol-Instruct on a dataset's instructions.
struct DataEvolveCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "evolve",
        abstract: "Evolve instructions (Evol-Instruct): harder in depth, new in breadth, answers regenerated, failed evolutions eliminated.",
        discussion: """
        Each round rewrites every sample's latest surviving instruction by one method, chosen per \
        sample and round from a seeded hash: add_constraints, deepen, concretize, \
        increase_reasoning, complicate_input (in depth) or breadth (a new instruction of the same \
        domain). The answer is regenerated for each evolved instruction. An evolution is \
        eliminated when it copies the rewriting prompt or is empty (copied_prompt), asks for the \
        same as before (no_information_gain: the LLM says "Equal"), is answered with a refusal \
        under 80 words (refusal), or its answer is only stop words and punctuation or under \
        --min-answer-words words (too_short). Evolved rows carry their lineage: id, evolved_from, \
        parent, round, method. Every call is kept in the state file: run again after a kill and \
        only calls never answered are made.
        """)

    @Option(help: "Input JSONL (any supported format).") var input: String
    @Option(help: "Output JSONL: each original (unless --replace) followed by its surviving evolutions.") var output: String
    @Option(help: "OpenAI-compatible endpoint up to /v1.") var baseURL: String
    @Option(help: "The model that rewrites and answers.") var model: String
    @Option(help: "Environment variable holding the API key.") var apiKeyEnv: String = "OPENAI_API_KEY"
    @Option(help: "Generations of evolution.") var rounds: Int = 1
    @Option(help: "Methods to choose from (repeatable; default: all six).") var method: [String] = []
    @Option(help: "Seed of the method choice.") var seed: Int = 0
    @Option(help: "Sampling temperature of rewrites and answers.") var temperature: Double = 0.7
    @Option(help: "Answers shorter than this many words are eliminated.") var minAnswerWords: Int = 3
    @Flag(help: "Write the evolutions in place of their originals.") var replace = false
    @Option(help: "Dollars per million prompt tokens.") var priceInput: Double = 0
    @Option(help: "Dollars per million completion tokens.") var priceOutput: Double = 0
    @OptionGroup var calls: LLMCallOptions

    func run() throws {
        try reportingErrors {
            var settings: [String: Any] = ["base_url": baseURL, "model": model, "api_key_env": apiKeyEnv, "rounds": rounds, "seed": seed,
                                           "temperature": temperature, "min_answer_words": minAnswerWords, "keep_original": !replace,
                                           "price_input": priceInput, "price_output": priceOutput]
            if !method.isEmpty { settings["methods"] = method }
            let stage = try EvolveStage.fromSettings(settings, source: "refinery data evolve")
            let lines = try DatasetInput.read(input)
            let (store, book) = try calls.book(output: output)
            let context = CurationContext(store: store, calls: book, report: { Output.progress($0) })
            let kept = try CurationPlan.run(stage, position: 0, on: lines, context: context, pipeline: "data evolve")
            try DatasetLines.write(kept.map(\.row), to: output)
            Output.line("evolved \(lines.count) samples into \(kept.count) rows → \(output); calls kept in \(store.path)")
        }
    }
}
