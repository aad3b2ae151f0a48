import ArgumentParser
import Foundation
import RefineryCore
import RefineryText

/// `refinery tokenize`: JSONL `{"text": …}` in, JSONL `{"ids": […]}` out.
struct TokenizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokenize", abstract: "Tokenize JSONL {\"text\": …} lines with a model's tokenizer.json.")

    @Option(name: .long, help: "Model folder holding tokenizer.json.")
    var model: String

    @Option(name: .long, help: "JSONL input (default: standard input).")
    var input: String?

    @Flag(name: .long, help: "Do not add the tokenizer's special tokens (BOS).")
    var noSpecialTokens = false

    func run() throws {
        try reportingErrors {
            let tokenizer = try Tokenizer(contentsOf: URL(fileURLWithPath: model).appendingPathComponent("tokenizer.json"))
            try LineReader.forEachLine(path: input) { line, number in
                let source = input ?? "<stdin>"
                let row: JSONValue
                do { row = try JSONValue.parse(line) } catch {
                    throw CommandError("\(source):\(number): not valid JSON: \(error)")
                }
                guard let text = row["text"]?.stringValue else {
                    throw CommandError("\(source):\(number): expected an object with a string \"text\"")
                }
                let ids = tokenizer.encode(text, addSpecialTokens: !noSpecialTokens).ids
                Output.line(JSONValue.object([("ids", .array(ids.map { .int($0) }))]).compactText)
            }
        }
    }
}
