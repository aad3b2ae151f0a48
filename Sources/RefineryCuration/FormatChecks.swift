import Foundation
import RefineryCore

/// Checks of an answer's form: closed code fences, balanced brackets and quotes, JSON that parses.
public enum FormatChecks {
    /// The first problem of `text`'s form, or nil: an unclosed ``` fence, a ```json block that does
    /// not parse, or brackets / double quotes that do not balance in its prose (code blocks are
    /// checked as code: brackets only).
    public static func problem(_ text: String) -> String? {
        let fences = fencedBlocks(text)
        if fences.unclosed { return "a ``` code block is never closed" }
        for block in fences.blocks where block.language == "json" {
            if (try? JSONValue.parse(block.body)) == nil { return "a ```json block does not parse as JSON" }
        }
        for block in fences.blocks {
            if let problem = bracketProblem(block.body, quotes: false) { return "in a code block, \(problem)" }
        }
        return bracketProblem(fences.prose, quotes: true)
    }

    /// The problem of a text that must be JSON as a whole (a fenced block alone is accepted), or nil.
    public static func jsonProblem(_ text: String) -> String? {
        var body = text.trimmingCharacters(in: .whitespacesAndNewlines)
        let fences = fencedBlocks(body)
        if fences.blocks.count == 1 && fences.prose.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty { body = fences.blocks[0].body }
        return (try? JSONValue.parse(body)) == nil ? "the answer is not valid JSON" : nil
    }

    struct Fences {
        var blocks: [(language: String, body: String)] = []
        var prose = ""
        var unclosed = false
    }

    /// Splits `text` into ``` fenced blocks (with their info string's first word) and the prose around them.
    static func fencedBlocks(_ text: String) -> Fences {
        var result = Fences()
        var inside = false, language = "", body: [Substring] = []
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            let trimmed = line.drop(while: { $0 == " " })
            if trimmed.hasPrefix("```") {
                if inside {
                    result.blocks.append((language, body.joined(separator: "\n")))
                    inside = false
                    body = []
                } else {
                    inside = true
                    language = String(trimmed.dropFirst(3).split(separator: " ").first ?? "").lowercased()
                }
                continue
            }
            if inside { body.append(line) } else { result.prose += line + "\n" }
        }
        result.unclosed = inside
        return result
    }

    /// Unbalanced (), [], {} — and, with `quotes`, an odd number of straight double quotes.
    static func bracketProblem(_ text: String, quotes: Bool) -> String? {
        var stack: [Character] = []
        let pairs: [Character: Character] = [")": "(", "]": "[", "}": "{"]
        var doubleQuotes = 0
        for character in text {
            switch character {
            case "(", "[", "{": stack.append(character)
            case ")", "]", "}":
                guard stack.last == pairs[character] else { return "“\(character)” closes nothing open" }
                stack.removeLast()
            case "\"": doubleQuotes += 1
            default: break
            }
        }
        if let open = stack.last { return "“\(open)” is never closed" }
        if quotes && doubleQuotes % 2 == 1 { return "a double quote is never closed" }
        return nil
    }
}
