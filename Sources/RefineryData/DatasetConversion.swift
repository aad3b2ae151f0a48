import RefineryCore
import RefineryText

/// Converts samples between the dataset formats of the training engine.
public enum DatasetConversion {
    /// One sample as a row of `format`, or why it cannot be expressed there.
    public static func row(_ sample: Sample, as format: DatasetFormat) throws -> JSONValue {
        switch (sample, format) {
        case let (.text(text), .text):
            return .object([("text", .string(text))])
        case (.text, _):
            throw DataError("a raw-text sample has no turns to write as \(format.rawValue); keep --to text")
        case (.chat, .text):
            throw DataError("a conversation has no single text without a chat template; use `refinery render` for that")
        case let (.chat(messages), .openai):
            return .object([("messages", .array(messages.map { .object([("role", .string($0.role)), ("content", .string($0.content))] + $0.extra) }))])
        case let (.chat(messages), .sharegpt):
            let names = ["user": "human", "assistant": "gpt", "system": "system", "tool": "tool"]
            return .object([("conversations", .array(try messages.map { message in
                guard let from = names[message.role] else { throw DataError("role \"\(message.role)\" has no ShareGPT name") }
                return .object([("from", .string(from)), ("value", .string(message.content))])
            }))])
        case let (.chat(messages), .alpaca), let (.chat(messages), .oasst):
            let system = messages.first?.role == "system" ? messages.first?.content : nil
            let turns = messages.filter { $0.role != "system" }
            guard turns.count == 2, turns[0].role == "user", turns[1].role == "assistant" else {
                throw DataError("\(format.rawValue) holds one user turn and one answer; this conversation has \(turns.count) turns")
            }
            if format == .oasst {
                guard system == nil else { throw DataError("oasst rows have no system prompt") }
                return .object([("INSTRUCTION", .string(turns[0].content)), ("RESPONSE", .string(turns[1].content))])
            }
            var fields: [(String, JSONValue)] = [("instruction", .string(turns[0].content)), ("input", .string("")), ("output", .string(turns[1].content))]
            if let system { fields.append(("system", .string(system))) }
            return .object(fields)
        }
    }
}
