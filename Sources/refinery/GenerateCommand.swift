import ArgumentParser
import Foundation
import RefineryCore
import RefineryModel
import RefineryText

/// `refinery generate`: continue a raw prompt.
struct GenerateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate", abstract: "Continue a raw text prompt (temperature 0 = greedy).")

    @Option(name: .long, help: "Precision of the matrix products: auto (the checkpoint's), float32 or bfloat16.")
    var dtype: String = "auto"

    @Option(name: .long, help: "Model folder.")
    var model: String

    @Option(name: .long, help: "PEFT LoRA adapter, merged into the weights in memory.")
    var adapter: String?

    @Option(name: .long, help: "The prompt text (tokenized with the tokenizer's special tokens, e.g. BOS).")
    var prompt: String

    @Option(name: .long, help: "Maximum new tokens.")
    var maxNewTokens: Int = 64

    @Option(name: .long, help: "Sampling temperature; 0 is greedy.")
    var temperature: Float = 0

    @Option(name: .long, help: "Nucleus sampling mass.")
    var topP: Float = 1

    @Option(name: .long, help: "Keep only the k most likely tokens (0: all).")
    var topK: Int = 0

    @Option(name: .long, help: "Random seed for sampling.")
    var seed: UInt64 = 0

    @Flag(name: .long, help: "Print one JSON object {\"ids\": […], \"text\": …} instead of streaming text.")
    var json = false

    func validate() throws {
        if maxNewTokens < 0 { throw ValidationError("--max-new-tokens must be ≥ 0") }
        if temperature < 0 { throw ValidationError("--temperature must be ≥ 0") }
        if !(topP > 0 && topP <= 1) { throw ValidationError("--top-p must be in (0, 1]") }
        if topK < 0 { throw ValidationError("--top-k must be ≥ 0") }
    }

    func run() throws {
        try reportingErrors {
            let directory = URL(fileURLWithPath: model)
            let chat = try ChatTokenizer(directory: directory)
            let llama = try LlamaModel(directory: directory, dtype: try DTypeChoice(parsing: dtype, source: "--dtype"))
            if let adapter { llama.merge(try LoRAAdapter.load(directory: URL(fileURLWithPath: adapter), model: llama.config)) }
            let promptIDs = chat.tokenizer.encode(prompt, addSpecialTokens: true).ids
            var stops = chat.stopTokenIDs
            stops.formUnion(llama.config.eosTokenIDs)
            let options = SamplingOptions(maxNewTokens: maxNewTokens, temperature: temperature, topP: topP, topK: topK,
                                          seed: seed, stopTokens: stops)
            var stream = StreamingDecoder(tokenizer: chat.tokenizer)
            let ids = try llama.generate(prompt: promptIDs, options: options) { id in
                if !json { Output.write(stream.append(id)) }
                return true
            }
            let text = chat.tokenizer.decode(ids, skipSpecialTokens: true)
            if json {
                Output.line(JSONValue.object([("ids", .array(ids.map { .int($0) })), ("text", .string(text))]).compactText)
            } else {
                Output.write(stream.finish() + "\n")
            }
        }
    }
}
