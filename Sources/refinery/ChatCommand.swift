import ArgumentParser
import Foundation
import RefineryModel
import RefineryText

/// `refinery chat`: an interactive conversation through the model's chat template, streamed.
struct ChatCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chat", abstract: "Chat with a model through its chat template (lines on standard input; /reset, /exit).")

    @Option(help: "Model folder.") var model: String
    @Option(help: "PEFT LoRA adapter, merged into the weights in memory.") var adapter: String?
    @Option(help: "Built-in template instead of the model's.") var template: String?
    @Option(help: "System message.") var system: String?
    @Option(help: "Maximum new tokens per answer.") var maxNewTokens: Int = 256
    @Option(help: "Sampling temperature; 0 is greedy.") var temperature: Float = 0
    @Option(help: "Nucleus sampling mass.") var topP: Float = 1
    @Option(help: "Keep only the k most likely tokens (0: all).") var topK: Int = 0
    @Option(help: "Random seed.") var seed: UInt64 = 0
    @Option(name: .long, help: "Precision of the matrix products: auto (the checkpoint's), float32 or bfloat16.")
    var dtype: String = "auto"


    func run() throws {
        try reportingErrors {
            let directory = URL(fileURLWithPath: model)
            let chat = try ChatTokenizer(directory: directory, templateName: template)
            let llama = try LlamaModel(directory: directory, dtype: try DTypeChoice(parsing: dtype, source: "--dtype"),
                                       projections: QLoRABaseNote.projections(forAdapter: adapter))
            if let adapter { llama.merge(try LoRAAdapter.load(directory: URL(fileURLWithPath: adapter), model: llama.config)) }
            var stops = chat.stopTokenIDs
            stops.formUnion(llama.config.eosTokenIDs)
            let initial = system.map { [ChatMessage(role: "system", content: $0)] } ?? []
            var messages = initial
            var turn: UInt64 = 0
            let interactive = isatty(STDIN_FILENO) != 0
            if interactive { Output.progress("[chat] \(model) — type a message; /reset starts over, /exit leaves\n> ") }
            while let line = readLine(strippingNewline: true) {
                let text = line.trimmingCharacters(in: .whitespaces)
                if text == "/exit" || text == "/quit" { break }
                if text == "/reset" { messages = initial; if interactive { Output.progress("> ") }; continue }
                if text.isEmpty { if interactive { Output.progress("> ") }; continue }
                messages.append(ChatMessage(role: "user", content: text))
                let prompt = try chat.render(messages, addGenerationPrompt: true)
                let ids = chat.tokenizer.encode(prompt, addSpecialTokens: false).ids
                var stream = StreamingDecoder(tokenizer: chat.tokenizer)
                let options = SamplingOptions(maxNewTokens: maxNewTokens, temperature: temperature, topP: topP, topK: topK,
                                              seed: seed &+ turn, stopTokens: stops)
                let answerIDs = try llama.generate(prompt: ids, options: options) { id in
                    Output.write(stream.append(id))
                    return true
                }
                Output.write(stream.finish() + "\n")
                let answer = chat.tokenizer.decode(answerIDs, skipSpecialTokens: true)
                messages.append(ChatMessage(role: "assistant", content: answer))
                turn += 1
                if interactive { Output.progress("> ") }
            }
        }
    }
}
