import Foundation
import RefineryCore
import RefineryCuration
import RefineryLLM
import RefineryStore
import RefineryText
import Testing

@Suite struct SynthesisTests {
    /// ROUGE-L equals Google's rouge-score (no stemmer) on the fixture pairs of scripts/make_rouge_fixture.py.
    @Test func rougeLMatchesRougeScore() throws {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/rouge_l.json")
        let cases = try #require(try JSONValue.parse(bytes: Array(Data(contentsOf: url))).arrayValue)
        #expect(cases.count == 50)
        for item in cases {
            let target = item["target"]?.stringValue ?? "", prediction = item["prediction"]?.stringValue ?? ""
            let score = RougeL(target: target, prediction: prediction)
            #expect(abs(score.precision - (item["precision"]?.doubleValue ?? -1)) < 1e-12, "\(target) | \(prediction)")
            #expect(abs(score.recall - (item["recall"]?.doubleValue ?? -1)) < 1e-12, "\(target) | \(prediction)")
            #expect(abs(score.f - (item["f"]?.doubleValue ?? -1)) < 1e-12, "\(target) | \(prediction)")
        }
    }

    /// Candidates too close to a seed or to one another never pass; every kept instruction stays
    /// under the threshold with everything kept before it; the taxonomy is named in turn.
    @Test func theNoveltyFilterKeepsOnlyInstructionsUnlikeThePool() throws {
        let seeds = ["Explain how rainbows form.", "Write a limerick about a cat.", "List three tips for learning a language."]
        var served = 0
        let executor = ScriptedExecutor { call in
            let text = call.request.messages.last?.content ?? ""
            guard text.contains("\"instructions\"") else { return "An answer to: \(text)" }
            served += 1
            let subjects = ["the water cycle", "compound interest", "plate tectonics", "sourdough starters", "bird migration", "tidal power",
                            "medieval guilds", "quantum dots", "urban beekeeping", "glacier retreat"]
            let styles = ["to a beginner in simple steps", "as a newspaper editor would", "with one worked example", "in a table of pros and cons",
                          "for a skeptical investor", "as a short dialogue", "in the voice of a pirate", "for a museum plaque", "using an analogy", "in exactly five bullet points"]
            let novel = "Describe \(subjects[served % subjects.count]) \(styles[served % styles.count])"
            return JSONValue.object([("instructions", .array([
                .string("Explain how rainbows form in the sky."),          // a seed, barely changed
                .string(novel), .string(novel + "."),                      // a copy of the one before
                .string("Draw a map of the town."),                        // needs a picture
                .string("Hi"),                                             // too short
                .string("Compose a sonnet about \(subjects[(served + 5) % subjects.count]) for an old friend who loves gardening"),
            ]))]).compactText
        }
        let synthesis = SelfInstruct(generator: ChatModel(baseURL: "http://127.0.0.1:9/v1", model: "gen"), count: 6, perPrompt: 6, examplesPerPrompt: 2,
                                     promptsPerRound: 2, taxonomy: TaskTaxonomy(topics: ["oceans", "law"], taskTypes: ["explain"]))
        let (tasks, tally) = try synthesis.run(seeds: seeds, book: LLMCallBook(store: try JudgeTests.store(), executor: executor))
        #expect(tasks.count == 6)
        #expect(tally.tooSimilar >= 4 && tally.unsuitable >= 2 && tally.badLength >= 2, "\(tally)")
        var pool = seeds
        for task in tasks {
            let closest = pool.map { RougeL(target: $0, prediction: task.instruction).f }.max() ?? 0
            #expect(closest < 0.7, "\(task.instruction) is too close to the pool (\(closest))")
            #expect(abs(closest - task.closest) < 1e-12)
            #expect(!task.answer.isEmpty)
            pool.append(task.instruction)
        }
        let prompts = executor.asked.map { $0.request.messages.last?.content ?? "" }.filter { $0.contains("\"instructions\"") }
        #expect(prompts[0].contains("about oceans") && prompts[1].contains("about law"), "the taxonomy's cells in turn: \(prompts.prefix(2))")
        #expect(tasks.first?.topic == "oceans")
    }
}
