import Foundation
import RefineryCore

/// How the dry-run server answers Refinery's default curation prompts. Judges: deterministic
/// scores and verdicts that depend on the answers, a little on the judge model (so a jury of two
/// mock models disagrees now and then), and — for a comparison — never on the order of the
/// answers, unless the server plays a position-biased judge. Evol-Instruct: rewrites that add to
/// the prompt by the method asked for (and now and then fail in the ways the elimination rules
/// catch), equality checks, and answers (now and then a refusal).
public enum MockCurationReplies {
    /// The reply to a curation prompt, or nil when `messages` hold none.
    public static func reply(system: String, user: String, model: String, prefersFirst: Bool) -> String? {
        if let judged = MockJudge.reply(to: user, model: model, prefersFirst: prefersFirst) { return judged }
        if let given = MockJudge.section(user, after: "#Given Prompt#:\n", before: "\n\n#Rewritten Prompt#:") {
            return rewrite(given, method: MockJudge.section(user, after: "Method: ", before: "\n") ?? "")
        }
        if let first = MockJudge.section(user, after: "#First Instruction#:\n", before: "\n\n#Second Instruction#:"),
           let second = MockJudge.section(user, after: "#Second Instruction#:\n", before: nil) {
            return first.lowercased() == second.lowercased() ? "Equal" : "Not Equal"
        }
        if user.contains("{\"ratings\"") && user.contains("Answer 1:\n") { return ratings(user) }
        if user.contains("{\"instructions\"") { return instructions(user) }
        if system.hasPrefix("Answer the user's request") { return answer(user, model: model) }
        return nil
    }

    /// Self-instruct: new instructions made of a verb, a subject (the prompt's topic when it names
    /// one) and an audience, picked by a hash of the prompt — some repeat, as a model's do.
    static func instructions(_ prompt: String) -> String {
        let count = Int(MockJudge.section(prompt, after: "Come up with ", before: " new") ?? "") ?? 5
        let topic = MockJudge.section(prompt, after: "must be about ", before: " and be a")
        let verbs = ["Explain", "Summarize the main ideas of", "Write a short story about", "List the pros and cons of", "Compare two views on",
                     "Describe a plan to improve", "Give three facts about", "Write a haiku about", "Classify the risks of", "Outline a lesson on"]
        let subjects = ["river ecosystems", "solar panels", "medieval trade routes", "sourdough baking", "urban cycling", "tide pools",
                        "public libraries", "volcanic soil", "chess openings", "rainwater harvesting", "bird migration", "paper making"]
        let audiences = ["for a ten-year-old", "for a busy manager", "in plain words", "for a science class", "in under 100 words",
                         "for a travel guide", "as a checklist", "for a newsletter"]
        var state = StableHash.value(prompt)
        func pick(_ list: [String]) -> String {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return list[Int((state >> 33) % UInt64(list.count))]
        }
        let items: [JSONValue] = (0..<max(1, min(count, 20))).map { _ in
            .string("\(pick(verbs)) \(topic ?? pick(subjects)) \(pick(audiences)).")
        }
        return JSONValue.object([("instructions", .array(items))]).compactText
    }

    /// UltraFeedback ratings: each answer's common quality (1–4) plus one, sometimes one less on an aspect.
    static func ratings(_ prompt: String) -> String {
        let aspect = MockJudge.section(prompt, after: "on one aspect, ", before: ":") ?? ""
        var answers: [String] = []
        var index = 1
        while let start = prompt.range(of: "Answer \(index):\n") {
            let rest = prompt[start.upperBound...]
            let end = rest.range(of: "\n\nAnswer \(index + 1):\n")?.lowerBound ?? rest.endIndex
            answers.append(rest[..<end].trimmingCharacters(in: .whitespacesAndNewlines))
            index += 1
        }
        let entries: [JSONValue] = answers.enumerated().map { offset, text in
            var rating = MockJudge.quality(text) + 1
            if StableHash.value(aspect + "\u{1}" + text) % 7 == 0 { rating -= 1 }
            return .object([("answer", .int(offset + 1)), ("rationale", .string("Rated on \(aspect) from the answer's content.")), ("rating", .int(rating))])
        }
        return JSONValue.object([("ratings", .array(entries))]).compactText
    }

    /// A rewrite by the method named; about one in eight echoes the scaffolding and one in ten
    /// changes nothing (the elimination rules' cases).
    static func rewrite(_ given: String, method: String) -> String {
        let roll = StableHash.value("rewrite\u{1}" + given + method)
        if roll % 8 == 0 { return "#Rewritten Prompt#: " + given }
        if roll % 10 == 1 { return given }
        let lower = method.lowercased()
        if lower.contains("brand-new") {
            let topic = given.split(separator: " ").prefix(6).joined(separator: " ")
            return "Write a short guide to a rarely discussed aspect of this subject: \(topic)."
        }
        let addition: String
        if lower.contains("constraint") { addition = "Keep the answer under 150 words and include one example." }
        else if lower.contains("depth") { addition = "Also explain why it matters and what is commonly misunderstood about it." }
        else if lower.contains("specific") { addition = "Illustrate it with one specific real-world case." }
        else if lower.contains("multi-step") { addition = "Work through it step by step, justifying each step." }
        else if lower.contains("input") { addition = "Base the answer on this input: {\"values\": [3, 1, 2]}." }
        else { addition = "Be precise." }
        return given + " " + addition
    }

    /// An answer built from the request's words, longer or shorter by model; about one in twelve is a refusal.
    static func answer(_ request: String, model: String) -> String {
        if StableHash.value("answer\u{1}" + model + "\u{1}" + request) % 12 == 0 { return "I'm sorry, but I cannot help with that request." }
        let count = 2 + Int(StableHash.value(model) % 7)
        let words = request.split(whereSeparator: { !$0.isLetter }).filter { $0.count > 3 }.prefix(count).map { $0.lowercased() }
        return "Here is a complete answer. It covers " + words.joined(separator: ", ")
            + " in turn, explains how they relate, and closes with a short example that puts them to use."
    }
}

/// Judge replies of the dry-run server.
public enum MockJudge {
    /// The reply to a judge prompt, or nil when `prompt` is not one.
    public static func reply(to prompt: String, model: String, prefersFirst: Bool) -> String? {
        if let a = section(prompt, after: "Answer A:\n", before: "\n\nAnswer B:"), let b = section(prompt, after: "Answer B:\n", before: nil) {
            let winner: String
            if prefersFirst {
                winner = "A"
            } else if a == b {
                winner = "tie"
            } else {
                // The better answer by its quality, the same whichever place it is in.
                let (qa, qb) = (quality(a), quality(b))
                winner = qa != qb ? (qa > qb ? "A" : "B") : (StableHash.value(a) > StableHash.value(b) ? "A" : "B")
            }
            let feedback = winner == "tie" ? "Both answers are equally good." : "Answer \(winner) is more complete and more precise."
            return JSONValue.object([("feedback", .string(feedback)), ("winner", .string(winner))]).compactText
        }
        if prompt.contains("\"score\""), let answer = section(prompt, after: "Answer:\n", before: nil) {
            var score = quality(answer)
            // Each judge model departs from the common view on about one answer in five.
            let noise = StableHash.value(model + "\u{1}" + answer) % 10
            if noise == 0 { score = min(4, score + 1) } else if noise == 1 { score = max(1, score - 1) }
            let feedback = ["The answer misses the point of the instruction.", "The answer is on topic but incomplete.",
                            "The answer is correct and helpful, though it could say more.", "The answer is complete, correct and clear."][score - 1]
            return JSONValue.object([("feedback", .string(feedback)), ("score", .int(score))]).compactText
        }
        return nil
    }

    /// A score from 1 to 4 every mock judge agrees on: very short answers get 1, others spread by a hash.
    public static func quality(_ answer: String) -> Int {
        let words = answer.split(whereSeparator: \.isWhitespace).count
        if words < 3 { return 1 }
        return 2 + Int(StableHash.value(answer) % 3)
    }

    /// The text between `start` and `end` (or the end of the prompt), trimmed.
    static func section(_ prompt: String, after start: String, before end: String?) -> String? {
        guard let from = prompt.range(of: start, options: .backwards) else { return nil }
        var rest = prompt[from.upperBound...]
        if let end {
            guard let to = rest.range(of: end) else { return nil }
            rest = rest[..<to.lowerBound]
        }
        return rest.trimmingCharacters(in: .whitespacesAndNewlines)
    }
}
