import ArgumentParser
import Foundation
import RefineryCore
import RefineryText

/// `refinery render`: JSONL conversations in, JSONL `{"text": …}` rendered by the chat template out.
struct RenderCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "render", abstract: "Render conversations with the model's chat template (or a built-in one).")

    @Option(name: .long, help: "Model folder holding tokenizer.json and tokenizer_config.json.")
    var model: String

    @Option(name: .long, help: "Built-in template instead of the model's: \(BuiltinTemplates.names.joined(separator: ", ")).")
    var template: String?

    @Flag(name: .long, help: "End with the assistant header so a model can continue.")
    var addGenerationPrompt = false

    @Option(name: .long, help: "JSONL input (default: standard input); any dataset format.")
    var input: String?

    func run() throws {
        try reportingErrors {
            let chat = try ChatTokenizer(directory: URL(fileURLWithPath: model), templateName: template)
            let reader = DatasetReader()
            try LineReader.forEachLine(path: input) { line, number in
                let source = input ?? "<stdin>"
                let sample = try reader.parse(line: line, lineNumber: number, source: source)
                let text: String
                switch sample {
                case let .chat(messages):
                    do { text = try chat.render(messages, addGenerationPrompt: addGenerationPrompt) } catch let error as TextError {
                        throw CommandError("\(source):\(number): \(error.message)")
                    }
                case let .text(raw): text = raw
                }
                Output.line(JSONValue.object([("text", .string(text))]).compactText)
            }
        }
    }
}
