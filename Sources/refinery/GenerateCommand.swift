import ArgumentParser
import Foundation
import RefineryCore
import RefineryModel
import RefineryText

/// `refinery generate`: continue one raw prompt, or every sample of a JSONL file in batches.
struct GenerateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate", abstract: "Continue a raw text prompt, or answer every sample of a JSONL file (temperature 0 = greedy).",
        discussion: """
        With --input, each line is a sample in any dataset format: a conversation is answered \
        through the chat template (messages after its last user turn are dropped), a text sample \
        is continued. Up to --batch-size samples are decoded together; each output line is the \
        input object with "completion" added, written whole to --output (or standard output).
        """)

    @Option(name: .long, help: "Precision of the matrix products: auto (the checkpoint's), float32 or bfloat16.")
    var dtype: String = "auto"

    @Option(name: .long, help: "Model folder.")
    var model: String

    @Option(name: .long, help: "PEFT LoRA adapter, merged into the weights in memory.")
    var adapter: String?

    @Option(name: .long, help: "The prompt text (tokenized with the tokenizer's special tokens, e.g. BOS).")
    var prompt: String?

    @Option(name: .long, help: "JSONL samples to answer (instead of --prompt).")
    var input: String?

    @Option(name: .long, help: "Where --input's answers go (JSONL, written whole at the end; default: standard output).")
    var output: String?

    @Option(name: .long, help: "Sequences decoded together with --input.")
    var batchSize: Int = 8

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
        if (prompt == nil) == (input == nil) { throw ValidationError("give either --prompt TEXT or --input FILE.jsonl") }
        if batchSize < 1 { throw ValidationError("--batch-size must be ≥ 1") }
        if output != nil && input == nil { throw ValidationError("--output goes with --input") }
    }

    func run() throws {
        try reportingErrors {
            let directory = URL(fileURLWithPath: model)
            let chat = try ChatTokenizer(directory: directory)
            let llama = try LlamaModel(directory: directory, dtype: try DTypeChoice(parsing: dtype, source: "--dtype"),
                                       projections: QLoRABaseNote.projections(forAdapter: adapter))
            if let adapter { llama.merge(try LoRAAdapter.load(directory: URL(fileURLWithPath: adapter), model: llama.config)) }
            var stops = chat.stopTokenIDs
            stops.formUnion(llama.config.eosTokenIDs)
            let options = SamplingOptions(maxNewTokens: maxNewTokens, temperature: temperature, topP: topP, topK: topK,
                                          seed: seed, stopTokens: stops)
            guard let prompt else {
                return try BatchGeneration(model: llama, chat: chat, options: options, batchSize: batchSize)
                    .run(input: input ?? "", output: output)
            }
            let promptIDs = chat.tokenizer.encode(prompt, addSpecialTokens: true).ids
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
