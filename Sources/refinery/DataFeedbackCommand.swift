import ArgumentParser
import Foundation
import RefineryCore
import RefineryData
import RefineryPipeline

/// `refinery data feedback`: UltraFeedback-style answers, ratings, the best answer and preference pairs.
struct DataFeedbackCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "feedback",
        abstract: "Answer each instruction with several models, rate the answers (UltraFeedback), keep the best, write preference pairs.",
        discussion: """
        Every --model answers every instruction (with the sample's own answer as one more \
        candidate unless --no-include-original). The --judge rates all answers of an instruction \
        on instruction_following, truthfulness, honesty and helpfulness (1–5, a rationale each). \
        The best mean rating replaces the sample's answer in --output; best vs worst goes to \
        --preferences as {"prompt", "chosen", "rejected"} in the conversational layout TRL's DPO \
        trainer reads (with both scores and models). Every call is kept in the state file: run \
        again after a kill and only calls never answered are made.
        """)

    @Option(help: "Input JSONL (any supported format).") var input: String
    @Option(help: "Output JSONL: each sample with its best-rated answer.") var output: String
    @Option(help: "Where the prompt/chosen/rejected pairs go.") var preferences: String?
    @Option(help: "OpenAI-compatible endpoint up to /v1 (of the answering models and the judge).") var baseURL: String
    @Option(help: "An answering model (repeatable).") var model: [String] = []
    @Option(help: "The rating model.") var judge: String
    @Option(help: "Environment variable holding the API key.") var apiKeyEnv: String = "OPENAI_API_KEY"
    @Flag(inversion: .prefixedNo, help: "Rate the sample's own answer with the others.") var includeOriginal = true
    @Option(help: "Aspects to rate (repeatable; default: all four).") var aspect: [String] = []
    @Option(help: "Sampling temperature of the answers.") var temperature: Double = 0.7
    @Option(help: "Dollars per million prompt tokens.") var priceInput: Double = 0
    @Option(help: "Dollars per million completion tokens.") var priceOutput: Double = 0
    @OptionGroup var calls: LLMCallOptions

    func run() throws {
        try reportingErrors {
            var settings: [String: Any] = ["base_url": baseURL, "models": model, "judge": judge, "api_key_env": apiKeyEnv,
                                           "include_original": includeOriginal, "temperature": temperature,
                                           "price_input": priceInput, "price_output": priceOutput]
            if !aspect.isEmpty { settings["aspects"] = aspect }
            if let preferences { settings["preferences"] = preferences }
            let stage = try FeedbackStage.fromSettings(settings, source: "refinery data feedback")
            let lines = try DatasetInput.read(input)
            let (store, book) = try calls.book(output: output)
            let context = CurationContext(store: store, calls: book, report: { Output.progress($0) })
            let kept = try CurationPlan.run(stage, position: 0, on: lines, context: context, pipeline: "data feedback")
            try DatasetLines.write(kept.map(\.row), to: output)
            Output.line("rated answers for \(lines.count) samples → \(output)\(preferences.map { "; pairs → \($0)" } ?? ""); calls kept in \(store.path)")
        }
    }
}
