import Foundation
import RefineryCore
import RefineryCuration
import RefineryLLM
import RefineryStore
import RefineryText
import Testing

@Suite struct EvolveFeedbackTests {
    static func user(_ call: LLMCall) -> String { call.request.messages.last(where: { $0.role == "user" })?.content ?? "" }

    /// The text between "#Given Prompt#:" and "#Rewritten Prompt#:" of a rewrite call.
    static func given(_ call: LLMCall) -> String? {
        let text = user(call)
        guard let start = text.range(of: "#Given Prompt#:\n"), let end = text.range(of: "\n\n#Rewritten Prompt#:") else { return nil }
        return String(text[start.upperBound..<end.lowerBound])
    }

    /// Each elimination rule, triggered by one sample; the last sample survives two rounds, the
    /// second round evolving the first round's instruction.
    @Test func everyEliminationRuleAndTheLineageOfSurvivors() throws {
        let instructions = ["copies", "unchanged", "judged equal", "refused", "stop words", "answer fails", "fine"]
        let executor = ScriptedExecutor { call in
            let text = Self.user(call)
            if let given = Self.given(call) {
                switch given {
                case "copies": return "Here is the given prompt, made harder: copies, with more."
                case "unchanged": return "Unchanged."
                default: return given + " with one more constraint"
                }
            }
            if text.contains("#First Instruction#") { return text.contains("judged equal") ? "Equal" : "Not Equal" }
            // Answers.
            if text.hasPrefix("refused") { return "I'm sorry, but I cannot help with that." }
            if text.hasPrefix("stop words") { return "the of and, to." }
            if text.hasPrefix("answer fails") { return nil }
            return "A full answer to: \(text)."
        }
        let evol = EvolInstruct(baseURL: "http://127.0.0.1:9/v1", model: "m", rounds: 2, methods: [.addConstraints])
        let history = try evol.evolve(instructions, keys: instructions, book: LLMCallBook(store: try JudgeTests.store(), executor: executor))
        let expected: [EvolutionRule?] = [.copiedPrompt, .noInformationGain, .noInformationGain, .refusal, .tooShort, .callFailed, nil]
        for (index, rule) in expected.enumerated() {
            #expect(history[index][0].eliminated == rule, "\(instructions[index]): \(String(describing: history[index][0].eliminated))")
        }
        // "unchanged" is caught without an equality call ("Unchanged." equals "unchanged" once normalised).
        #expect(!executor.asked.contains { Self.user($0).contains("#First Instruction#:\nunchanged") })
        // The survivor's second round evolves its first-round instruction; the answer is regenerated for each.
        let fine = history[6]
        #expect(fine.map(\.round) == [1, 2] && fine.allSatisfy { $0.eliminated == nil })
        #expect(fine[0].instruction == "fine with one more constraint")
        #expect(fine[1].instruction == "fine with one more constraint with one more constraint")
        #expect(fine[1].answer == "A full answer to: fine with one more constraint with one more constraint.")
        // An eliminated sample's next round starts again from its last surviving instruction.
        #expect(executor.asked.contains { Self.given($0) == "refused" } && history[3][1].instruction.hasPrefix("refused"))
    }

    @Test func theMethodOfASampleAndRoundFollowsTheSeed() {
        let a = EvolInstruct(baseURL: "http://x/v1", model: "m", seed: 1), b = EvolInstruct(baseURL: "http://x/v1", model: "m", seed: 2)
        let keys = (0..<60).map { "sample-\($0)" }
        #expect(keys.map { a.method(for: $0, round: 1) } == keys.map { a.method(for: $0, round: 1) })
        #expect(keys.map { a.method(for: $0, round: 1) } != keys.map { b.method(for: $0, round: 1) })
        #expect(Set(keys.map { a.method(for: $0, round: 1) }).count == EvolutionMethod.allCases.count, "every method is used")
    }

    /// Two answering models and the original; the judge prefers longer answers on every aspect.
    @Test func ultraFeedbackRatesPicksTheBestAndPairsItWithTheWorst() throws {
        let executor = ScriptedExecutor { call in
            let text = Self.user(call)
            guard text.contains("\"ratings\"") else {
                return call.request.model == "long" ? "A long and careful answer about \(text)" : "Short."
            }
            // Ratings by length of each "Answer k:" block.
            var ratings: [String] = []
            var k = 1
            while let start = text.range(of: "Answer \(k):\n") {
                let rest = text[start.upperBound...]
                let body = rest.range(of: "\n\nAnswer \(k + 1):\n").map { rest[..<$0.lowerBound] } ?? rest
                ratings.append(#"{"answer": \#(k), "rationale": "by length", "rating": \#(min(5, 1 + body.count / 15))}"#)
                k += 1
            }
            return #"{"ratings": [\#(ratings.joined(separator: ","))]}"#
        }
        let feedback = UltraFeedback(answerers: [ChatModel(baseURL: "http://127.0.0.1:9/v1", model: "short"),
                                                 ChatModel(baseURL: "http://127.0.0.1:9/v1", model: "long")],
                                     judge: ChatModel(baseURL: "http://127.0.0.1:9/v1", model: "judge"))
        let results = try feedback.run(instructions: ["Explain tides.", "Explain rain."], own: ["The moon pulls the sea.", nil],
                                       book: LLMCallBook(store: try JudgeTests.store(), executor: executor))
        #expect(results[0].answers.map(\.model) == ["original", "short", "long"])
        #expect(results[1].answers.map(\.model) == ["short", "long"])
        for result in results {
            #expect(result.failure == nil)
            #expect(result.answers.allSatisfy { $0.ratings.count == 4 && $0.rationales.count == 4 })
            #expect(result.answers[result.best ?? -1].model == "long")
            #expect(result.answers[result.rejected ?? -1].model == "short")
        }
        // 2 × 2 answers, then 4 aspects × 2 instructions.
        #expect(executor.asked.count == 4 + 8)
    }

    @Test func unreadableRatingsAreFollowedUpThenRecordedAsAFailure() throws {
        let replies = [#"{"ratings": [{"rating": 4}]}"#, #"{"ratings": [{"rating": 9}, {"rating": 2}]}"#, "All good."]
        var next = 0
        let executor = ScriptedExecutor { call in
            guard Self.user(call).contains("\"ratings\"") || call.request.messages.count > 2 else { return "an answer" }
            defer { next += 1 }
            return replies[next % replies.count]
        }
        let feedback = UltraFeedback(answerers: [ChatModel(baseURL: "http://127.0.0.1:9/v1", model: "a")],
                                     judge: ChatModel(baseURL: "http://127.0.0.1:9/v1", model: "judge"), aspects: [.helpfulness], maxInvalid: 2)
        let results = try feedback.run(instructions: ["Q?"], own: ["mine"], book: LLMCallBook(store: try JudgeTests.store(), executor: executor))
        #expect(results[0].failure?.contains("unreadable helpfulness ratings after 3 attempts") == true, "\(results[0].failure ?? "")")
        #expect(results[0].best == nil && results[0].rejected == nil)
        #expect(results[0].answers.allSatisfy { $0.ratings.isEmpty }, "no rating is recorded from an unreadable reply")
        #expect(UltraFeedback.parseRatings(#"{"ratings": [{"rating": 3, "rationale": "ok"}, {"rating": "5"}]}"#, count: 2).map { $0.map(\.rating) } == .success([3, 5]))
    }
}
