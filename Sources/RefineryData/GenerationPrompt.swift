import RefineryCore
import RefineryLLM
import RefineryText

/// The back-translation prompt: turns one extract into instruction–answer pairs (JSON).
/// Written by the Refinery team after the reference pipeline's approach; override both parts in
/// the config (`generate.system_prompt`, `generate.user_prompt` with `{extract}` and `{count}`).
public struct GenerationPrompt: Sendable, Equatable {
    public var system: String
    public var userTemplate: String
    public var pairsPerChunk: Int

    public static let defaultSystem = """
        You write training data for an assistant. You turn a passage of text into instruction–answer \
        pairs and reply with JSON only.
        """

    public static let defaultUser = """
        Read the extract below and write {count} instruction–answer pairs from it.

        - Each instruction asks for writing on one topic that the extract covers. It must stand on its own: \
        general, self-contained, and never mentioning "the extract", "the text", "the context", an article \
        or an author.
        - Each answer is a paragraph that responds to its instruction using only what the extract says, \
        written in the extract's own voice and style.
        - Do not invent facts that are not in the extract.

        Reply with a JSON object of exactly this shape:
        {"instruction_answer_pairs": [{"instruction": "...", "answer": "..."}]}
        with exactly {count} items.

        Extract:
        {extract}
        """

    public init(system: String = GenerationPrompt.defaultSystem, userTemplate: String = GenerationPrompt.defaultUser, pairsPerChunk: Int = 5) {
        self.system = system
        self.userTemplate = userTemplate
        self.pairsPerChunk = pairsPerChunk
    }

    public func messages(extract: String) -> [ChatMessage] {
        let user = userTemplate.replacingAll("{count}", with: String(pairsPerChunk)).replacingAll("{extract}", with: extract)
        return [ChatMessage(role: "system", content: system), ChatMessage(role: "user", content: user)]
    }

    /// The JSON schema of a valid reply (for servers with structured outputs).
    public var schema: JSONValue {
        let pair = JSONValue.object([
            ("type", .string("object")),
            // A non-space character in each: what `parse` accepts (and what constrained decoders enforce).
            ("properties", .object([("instruction", .object([("type", .string("string")), ("pattern", .string("\\S"))])),
                                    ("answer", .object([("type", .string("string")), ("pattern", .string("\\S"))]))])),
            ("required", .array([.string("instruction"), .string("answer")])),
            ("additionalProperties", .bool(false)),
        ])
        return .object([
            ("type", .string("object")),
            ("properties", .object([("instruction_answer_pairs", .object([("type", .string("array")), ("items", pair),
                                                                          ("minItems", .int(pairsPerChunk)), ("maxItems", .int(pairsPerChunk))]))])),
            ("required", .array([.string("instruction_answer_pairs")])),
            ("additionalProperties", .bool(false)),
        ])
    }

    /// The pairs of a reply, or why it is not valid.
    public func parse(_ content: String) -> Result<[(String, String)], ReplyProblem> {
        var text = content.trimmingCharacters(in: .whitespacesAndNewlines)
        if text.hasPrefix("```") {  // some servers fence JSON even in JSON mode
            text = text.split(separator: "\n", omittingEmptySubsequences: false).dropFirst().joined(separator: "\n")
            if let end = text.range(of: "```", options: .backwards) { text = String(text[..<end.lowerBound]) }
        }
        guard let json = try? JSONValue.parse(text) else { return .failure(.init("the reply is not valid JSON")) }
        guard let items = json["instruction_answer_pairs"]?.arrayValue else {
            return .failure(.init("the reply has no \"instruction_answer_pairs\" array"))
        }
        guard items.count == pairsPerChunk else {
            return .failure(.init("the reply has \(items.count) pairs instead of \(pairsPerChunk)"))
        }
        var pairs: [(String, String)] = []
        for (index, item) in items.enumerated() {
            guard let instruction = item["instruction"]?.stringValue?.trimmingCharacters(in: .whitespacesAndNewlines), !instruction.isEmpty,
                  let answer = item["answer"]?.stringValue?.trimmingCharacters(in: .whitespacesAndNewlines), !answer.isEmpty
            else {
                return .failure(.init("pair \(index) lacks a non-empty string \"instruction\" or \"answer\""))
            }
            pairs.append((instruction, answer))
        }
        return .success(pairs)
    }
}

/// Why a reply was refused.
public struct ReplyProblem: Error, Sendable, Equatable {
    public let reason: String
    public init(_ reason: String) { self.reason = reason }
}
