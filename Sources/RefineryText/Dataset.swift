import Foundation
import RefineryCore

/// The dataset formats of the training engine.
public enum DatasetFormat: String, Sendable, CaseIterable {
    /// `{"messages": [{"role", "content"}, …]}`
    case openai
    /// `{"conversations": [{"from": "human"|"gpt"|"system", "value"}, …]}`
    case sharegpt
    /// `{"instruction", "input"?, "output", "system"?}`
    case alpaca
    /// `{"INSTRUCTION", "RESPONSE"}`
    case oasst
    /// `{"text"}`: raw text, every token trained, EOS appended.
    case text

    /// Detects the format of one parsed row from its keys, or nil.
    public static func detect(_ row: JSONValue) -> DatasetFormat? {
        if row["messages"]?.arrayValue != nil { return .openai }
        if row["conversations"]?.arrayValue != nil { return .sharegpt }
        if row["instruction"] != nil && row["output"] != nil { return .alpaca }
        if row["INSTRUCTION"] != nil && row["RESPONSE"] != nil { return .oasst }
        if row["text"]?.stringValue != nil { return .text }
        return nil
    }
}

/// One training or evaluation example: a conversation, or raw text.
public enum Sample: Sendable, Equatable {
    case chat([ChatMessage])
    case text(String)
}

/// Reads JSONL datasets in any supported format, line by line (streamed), with errors that name
/// the file, the line and what is wrong.
public struct DatasetReader: Sendable {
    /// The format to expect, or nil to detect per row.
    public let format: DatasetFormat?

    public init(format: DatasetFormat? = nil) { self.format = format }

    /// Parses one line (1-based `lineNumber` for messages).
    public func parse(line: String, lineNumber: Int, source: String) throws -> Sample {
        let row: JSONValue
        do { row = try JSONValue.parse(line) } catch {
            throw TextError("\(source):\(lineNumber): not valid JSON: \(error.reason) at column \(error.column). Each line must be one JSON object.")
        }
        guard row.objectValue != nil else {
            throw TextError("\(source):\(lineNumber): expected a JSON object, found \(row.compactText.prefix(40))")
        }
        guard let format = format ?? DatasetFormat.detect(row) else {
            let keys = row.objectValue?.map(\.0).joined(separator: ", ") ?? ""
            throw TextError("\(source):\(lineNumber): cannot tell the dataset format from the keys [\(keys)]; expected \"messages\" (openai), \"conversations\" (sharegpt), \"instruction\"+\"output\" (alpaca), \"INSTRUCTION\"+\"RESPONSE\" (oasst) or \"text\"")
        }
        do {
            return try Self.sample(row, format: format)
        } catch let error as TextError {
            throw TextError("\(source):\(lineNumber): \(error.message)")
        }
    }

    static func string(_ row: JSONValue, _ key: String, format: DatasetFormat) throws -> String {
        guard let value = row[key] else { throw TextError("\(format.rawValue) row lacks \"\(key)\"") }
        guard let text = value.stringValue else { throw TextError("\"\(key)\" must be a string, found \(value.compactText.prefix(40))") }
        return text
    }

    static func sample(_ row: JSONValue, format: DatasetFormat) throws -> Sample {
        switch format {
        case .openai:
            guard let items = row["messages"]?.arrayValue else { throw TextError("openai row needs a \"messages\" array") }
            return .chat(try items.enumerated().map { index, item in
                guard let role = item["role"]?.stringValue else { throw TextError("message \(index) has no string \"role\"") }
                guard let content = item["content"]?.stringValue else { throw TextError("message \(index) (\(role)) has no string \"content\"") }
                let extra = (item.objectValue ?? []).filter { $0.0 != "role" && $0.0 != "content" }
                return ChatMessage(role: role, content: content, extra: extra)
            })
        case .sharegpt:
            guard let items = row["conversations"]?.arrayValue else { throw TextError("sharegpt row needs a \"conversations\" array") }
            return .chat(try items.enumerated().map { index, item in
                guard let from = item["from"]?.stringValue else { throw TextError("turn \(index) has no string \"from\"") }
                guard let value = item["value"]?.stringValue else { throw TextError("turn \(index) has no string \"value\"") }
                let roles = ["human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system", "tool": "tool"]
                guard let role = roles[from] else {
                    throw TextError("turn \(index) has \"from\": \"\(from)\"; expected human, gpt or system")
                }
                return ChatMessage(role: role, content: value)
            })
        case .alpaca:
            var instruction = try string(row, "instruction", format: format)
            if let input = row["input"]?.stringValue, !input.isEmpty { instruction += "\n\n" + input }
            let output = try string(row, "output", format: format)
            var messages: [ChatMessage] = []
            if let system = row["system"]?.stringValue, !system.isEmpty { messages.append(ChatMessage(role: "system", content: system)) }
            messages.append(ChatMessage(role: "user", content: instruction))
            messages.append(ChatMessage(role: "assistant", content: output))
            return .chat(messages)
        case .oasst:
            return .chat([ChatMessage(role: "user", content: try string(row, "INSTRUCTION", format: format)),
                          ChatMessage(role: "assistant", content: try string(row, "RESPONSE", format: format))])
        case .text:
            return .text(try string(row, "text", format: format))
        }
    }

    /// Reads every sample of the JSONL file at `path` (blank lines skipped), streaming the file.
    public func read(path: String, body: (Sample, Int) throws -> Void) throws {
        guard FileManager.default.fileExists(atPath: path) else {
            throw TextError("cannot open dataset \(path): no such file")
        }
        try LineReader.forEachLine(path: path) { line, number in
            try body(try parse(line: line, lineNumber: number, source: path), number)
        }
    }

    /// Reads all samples of `path` into memory.
    public func readAll(path: String) throws -> [Sample] {
        var samples: [Sample] = []
        try read(path: path) { sample, _ in samples.append(sample) }
        return samples
    }
}
