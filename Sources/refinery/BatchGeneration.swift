import Foundation
import RefineryCore
import RefineryData
import RefineryModel
import RefineryText

/// `refinery generate --input`: answers every sample of a JSONL file, decoding up to `batchSize`
/// sequences together, and writes the input objects with `completion` added.
struct BatchGeneration {
    let model: LlamaModel
    let chat: ChatTokenizer
    let options: SamplingOptions
    let batchSize: Int

    /// The prompt of one sample: a conversation up to its last user turn through the chat
    /// template (with the assistant header), or a text sample as it is (with BOS).
    func promptIDs(_ sample: Sample, source: String, line: Int) throws -> [Int] {
        switch sample {
        case let .chat(messages):
            guard let lastUser = messages.lastIndex(where: { $0.role == "user" }) else {
                throw CommandError("\(source):\(line): the conversation has no user message to answer")
            }
            do {
                let text = try chat.render(Array(messages[...lastUser]), addGenerationPrompt: true)
                return chat.tokenizer.encode(text, addSpecialTokens: false).ids
            } catch let error as TextError {
                throw CommandError("\(source):\(line): \(error.message)")
            }
        case let .text(text):
            return chat.tokenizer.encode(text, addSpecialTokens: true).ids
        }
    }

    func run(input: String, output: String?) throws {
        let reader = DatasetReader()
        var rows: [JSONValue] = [], prompts: [[Int]] = []
        try LineReader.forEachLine(path: input) { line, number in
            let sample = try reader.parse(line: line, lineNumber: number, source: input)
            guard case let .object(fields) = try JSONValue.parse(line) else {
                throw CommandError("\(input):\(number): expected a JSON object")
            }
            rows.append(.object(fields))
            prompts.append(try promptIDs(sample, source: input, line: number))
        }
        var tokens = 0
        let start = Date()
        var lastReport = start
        let outputs = try model.generate(prompts: prompts.map { ($0, options) }, batchSize: batchSize) { _, _ in
            tokens += 1
            let now = Date()
            if now.timeIntervalSince(lastReport) >= 2 {
                lastReport = now
                Output.progress(String(format: "generate: %d tokens, %.1f tokens/s\n", tokens, Double(tokens) / now.timeIntervalSince(start)))
            }
            return true
        }
        var lines: [String] = []
        for (row, ids) in zip(rows, outputs) {
            guard case var .object(fields) = row else { continue }
            fields.removeAll { $0.0 == "completion" }
            fields.append(("completion", .string(chat.tokenizer.decode(ids, skipSpecialTokens: true))))
            lines.append(JSONValue.object(fields).compactText)
        }
        let seconds = Date().timeIntervalSince(start)
        if let output {
            try DatasetLines.write(lines, to: output)
        } else {
            for line in lines { Output.line(line) }
        }
        Output.progress(String(format: "generate: %d samples, %d new tokens in %.1f s (%.1f tokens/s, batches of up to %d)%@\n",
                               rows.count, tokens, seconds, Double(tokens) / max(seconds, 1e-9), batchSize,
                               output.map { ", written to \($0)" } ?? ""))
    }
}
