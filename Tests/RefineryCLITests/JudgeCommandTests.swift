import Foundation
import RefineryCore
import RefineryStore
import Testing

/// LLM judging as users run it: `refinery data judge` and the `judge` curate stage against a real
/// `mock-llm` process over HTTP, SQLite state, and coordinators killed with SIGKILL.
@Suite(.serialized) struct JudgeCommandTests {
    typealias Mock = GenerateCrashTests.MockProcess
    typealias Background = ClusterTests.Background

    /// Samples with an answer and a different candidate answer each.
    static func writeSamples(_ url: URL, count: Int) throws {
        var rows: [String] = []
        for i in 0..<count {
            let answer = (0..<(2 + i % 7)).map { "fact\($0 * i)" }.joined(separator: " ")
            let messages: JSONValue = .array([
                .object([("role", .string("user")), ("content", .string("Explain point \(i) of the topic."))]),
                .object([("role", .string("assistant")), ("content", .string(answer))]),
            ])
            let alternative = "An alternative answer to point \(i), written with \(i % 5 + 3) more words."
            rows.append(JSONValue.object([("messages", messages), ("alternative", .string(alternative)), ("human", .int(1 + i % 4))]).compactText)
        }
        try rows.joined(separator: "\n").write(to: url, atomically: true, encoding: .utf8)
    }

    static func rows(_ path: String) throws -> [JSONValue] {
        try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").map { try JSONValue.parse(String($0)) }
    }

    /// With a judge that always prefers the first position, swapping the answers yields ties and
    /// never a biased verdict; with a consistent judge, the same winner both ways.
    @Test func pairwiseJudgingCancelsAPositionBiasedJudge() async throws {
        try await offThePool {
            let dir = try TrainCommandTests.temporary()
            let input = dir.appendingPathComponent("in.jsonl")
            try Self.writeSamples(input, count: 16)
            for biased in [true, false] {
                let extra: [String] = biased ? ["--judge-prefers-first"] : []
                let mock = try Mock(latencyMs: 0, extra: extra)
                let output = dir.appendingPathComponent("out-\(biased).jsonl").path
                let result = try CommandLineTests.run(["data", "judge", "--input", input.path, "--output", output, "--base-url", mock.base,
                                                       "--model", "judge-model", "--mode", "pairwise", "--candidate", "alternative", "--use-winner"])
                #expect(result.status == 0, "\(result.stderr)")
                let rows = try Self.rows(output)
                #expect(rows.count == 16)
                for row in rows {
                    let judge = row["judge"]
                    let orders = judge?["judges"]?.arrayValue?.first?["orders"]?.arrayValue?.compactMap(\.stringValue) ?? []
                    #expect(orders.count == 2, "both orders were asked")
                    if biased {
                        #expect(orders == ["A", "A"])
                        #expect(judge?["verdict"]?.stringValue == "tie", "a position-biased judge gives no verdict")
                    } else {
                        // The same answer wins whichever place it had.
                        #expect(orders == ["A", "B"] || orders == ["B", "A"], "\(orders)")
                        let verdict = judge?["verdict"]?.stringValue
                        #expect(verdict == (orders == ["A", "B"] ? "answer" : "candidate"))
                        if verdict == "candidate" {
                            let answer = row["messages"]?.arrayValue?.last?["content"]?.stringValue
                            #expect(answer == row["alternative"]?.stringValue, "--use-winner puts the winning answer in place")
                        }
                    }
                }
                let stats = try mock.stats()
                #expect(stats["requests"]?.intValue == 32, "two orders per sample")
            }
        }
    }

    /// A jury of two judges with a human column: scores and rationales per judge, the agreement
    /// printed; a rerun asks nothing again; a changed setting asks only for what is new.
    @Test func aJuryScoresFiltersAndAnswersARerunFromTheState() async throws {
        try await offThePool {
            let dir = try TrainCommandTests.temporary()
            let input = dir.appendingPathComponent("in.jsonl")
            try Self.writeSamples(input, count: 30)
            let mock = try Mock(latencyMs: 0)
            let output = dir.appendingPathComponent("out.jsonl").path
            let arguments = ["data", "judge", "--input", input.path, "--output", output, "--base-url", mock.base, "--model", "judge-a",
                             "--model", "judge-b", "--human", "human", "--min-score", "3"]
            let first = try CommandLineTests.run(arguments)
            #expect(first.status == 0, "\(first.stderr)")
            #expect(first.stderr.contains("judge-a vs judge-b:") && first.stderr.contains("Cohen's kappa"), "\(first.stderr)")
            #expect(first.stderr.contains("jury vs human:"), "\(first.stderr)")
            let rows = try Self.rows(output)
            #expect(!rows.isEmpty && rows.count < 30, "min-score drops some: \(rows.count)")
            for row in rows {
                let judge = row["judge"]
                #expect((judge?["score"]?.doubleValue ?? 0) >= 3)
                let judges = judge?["judges"]?.arrayValue ?? []
                #expect(judges.compactMap { $0["judge"]?.stringValue } == ["judge-a", "judge-b"])
                #expect(judges.allSatisfy { ($0["rationale"]?.stringValue ?? "").count > 10 && $0["score"]?.doubleValue != nil })
            }
            #expect(try mock.stats()["requests"]?.intValue == 60)
            // `data why` tells each judge's score and rationale; the report shows the scores and the agreement.
            let why = try CommandLineTests.run(["data", "why", "explain point 3 of the topic. fact0 fact3 fact6 fact9 fact12",
                                                "--state", output + ".state.db"])
            #expect(why.status == 0, "\(why.stderr)")
            #expect(why.stdout.contains("- judge-a: score") && why.stdout.contains("- judge-b: score"), "\(why.stdout)")
            let page = dir.appendingPathComponent("report.html").path
            let report = try CommandLineTests.run(["data", "report", "--input", input.path, "--state", output + ".state.db", "--output", page])
            #expect(report.status == 0, "\(report.stderr)")
            let html = try String(contentsOfFile: page, encoding: .utf8)
            #expect(html.contains("Scores and judges") && html.contains("judge-a vs judge-b:") && html.contains("Cohen&#39;s kappa"), "the report shows the scores and the agreement")
            let second = try CommandLineTests.run(arguments)
            #expect(second.status == 0, "\(second.stderr)")
            #expect(try Data(contentsOf: URL(fileURLWithPath: output)) == Data(rows.map { $0.compactText + "\n" }.joined().utf8))
            #expect(try mock.stats()["requests"]?.intValue == 60, "a rerun is answered from the state")
            // Another aggregate and threshold: decided again, but every call is in the state already.
            let third = try CommandLineTests.run(arguments.dropLast(2) + ["--min-score", "2", "--aggregate", "median"])
            #expect(third.status == 0, "\(third.stderr)")
            #expect(try mock.stats()["requests"]?.intValue == 60, "a changed setting re-pays no call")
            // A third judge: only its calls are new.
            let fourth = try CommandLineTests.run(arguments + ["--model", "judge-c"])
            #expect(fourth.status == 0, "\(fourth.stderr)")
            #expect(try mock.stats()["requests"]?.intValue == 90)
            #expect(try mock.stats()["prompts_answered_more_than_once"]?.intValue == 0)
        }
    }

    @Test func badJudgeSettingsAreRefusedWithTheReason() async throws {
        try await offThePool {
            let dir = try TrainCommandTests.temporary()
            let input = dir.appendingPathComponent("in.jsonl")
            try Self.writeSamples(input, count: 2)
            let base = ["data", "judge", "--input", input.path, "--output", dir.appendingPathComponent("o.jsonl").path, "--base-url", "http://127.0.0.1:9/v1"]
            let cases: [([String], String)] = [
                (["--model", "m", "--mode", "stars"], "mode must be rubric or pairwise"),
                (["--model", "m", "--mode", "pairwise"], "needs candidate"),
                (["--model", "m", "--aggregate", "loudest"], "aggregate must be mean, median or majority"),
                (["--model", "m", "--model", "m"], "two judges are the same model"),
                (["--model", "m", "--scale", "1"], "scale"),
                (["--model", "m", "--price-input=-1"], "price_input and price_output must be dollars per million tokens"),
                ([], "give --model"),
            ]
            for (extra, message) in cases {
                let result = try CommandLineTests.run(base + extra)
                #expect(result.status != 0)
                #expect(result.stderr.contains(message), "\(extra): \(result.stderr)")
            }
            let prompt = dir.appendingPathComponent("prompt.txt")
            try "Rate {answer} please".write(to: prompt, atomically: true, encoding: .utf8)
            let result = try CommandLineTests.run(base + ["--model", "m", "--prompt-file", prompt.path])
            #expect(result.status != 0 && result.stderr.contains("lacks {instruction}"), "\(result.stderr)")
        }
    }
}

/// `refinery data synthesize` and `data evolve` against a real mock-llm process.
@Suite(.serialized) struct SynthesizeAndEvolveCommandTests {
    typealias Mock = GenerateCrashTests.MockProcess

    @Test func synthesisKeepsNovelTasksWithTheirLineageAndResumesFromTheState() async throws {
        try await offThePool {
            let dir = try TrainCommandTests.temporary()
            let seeds = dir.appendingPathComponent("seeds.jsonl")
            try ["Explain how rainbows form.", "Write a limerick about a cat.", "List three tips for learning a language.", "Summarize the causes of the French Revolution."]
                .map { JSONValue.object([("instruction", .string($0))]).compactText }.joined(separator: "\n").write(to: seeds, atomically: true, encoding: .utf8)
            let mock = try Mock(latencyMs: 0)
            let output = dir.appendingPathComponent("synth.jsonl").path
            let arguments = ["data", "synthesize", "--seeds", seeds.path, "--output", output, "--count", "30", "--base-url", mock.base, "--model", "gen",
                             "--topic", "oceans", "--topic", "law", "--task-type", "explain"]
            let first = try CommandLineTests.run(arguments)
            #expect(first.status == 0, "\(first.stderr)")
            let rows = try JudgeCommandTests.rows(output)
            #expect(rows.count == 30)
            for row in rows {
                let lineage = row["lineage"]
                #expect((lineage?["closest_rouge_l"]?.doubleValue ?? 1) < 0.7)
                #expect(["oceans", "law"].contains(lineage?["topic"]?.stringValue ?? ""))
                #expect(lineage?["synthesized_from"]?.arrayValue?.isEmpty == false)
                #expect((row["messages"]?.arrayValue?.last?["content"]?.stringValue ?? "").count > 10)
            }
            let requests = try mock.stats()["requests"]?.intValue ?? 0
            let again = try CommandLineTests.run(arguments)
            #expect(again.status == 0, "\(again.stderr)")
            #expect(try mock.stats()["requests"]?.intValue == requests, "a rerun is answered from the state")
            #expect(ClusterTests.read(output) == Data(rows.map { $0.compactText + "\n" }.joined().utf8))
            let empty = dir.appendingPathComponent("empty.jsonl")
            try "".write(to: empty, atomically: true, encoding: .utf8)
            let refused = try CommandLineTests.run(["data", "synthesize", "--seeds", empty.path, "--output", output, "--count", "3", "--base-url", mock.base, "--model", "gen"])
            #expect(refused.status != 0 && refused.stderr.contains("holds no seed tasks"), "\(refused.stderr)")
        }
    }

    @Test func evolutionWritesTheLineageOfEverySurvivor() async throws {
        try await offThePool {
            let dir = try TrainCommandTests.temporary()
            let input = dir.appendingPathComponent("in.jsonl")
            try JudgeCommandTests.writeSamples(input, count: 20)
            let mock = try Mock(latencyMs: 0)
            let output = dir.appendingPathComponent("evolved.jsonl").path
            let result = try CommandLineTests.run(["data", "evolve", "--input", input.path, "--output", output, "--base-url", mock.base,
                                                   "--model", "evolver", "--rounds", "2"])
            #expect(result.status == 0, "\(result.stderr)")
            let rows = try JudgeCommandTests.rows(output)
            let evolved = rows.filter { $0["lineage"]?["evolved_from"] != nil }
            #expect(rows.count - evolved.count == 20, "every original is kept")
            #expect(!evolved.isEmpty && evolved.count < 40, "some evolutions survive, some are eliminated: \(evolved.count)")
            #expect(result.stderr.contains("eliminated:"), "\(result.stderr)")
            // Each kind of call says what it is in its progress line.
            for step in ["round 1 rewrites:", "round 1 novelty checks:", "round 1 answers:", "round 2 rewrites:"] {
                #expect(result.stderr.contains(step), "no progress line for \(step) in \(result.stderr)")
            }
            for row in evolved {
                let lineage = row["lineage"]
                let round = lineage?["round"]?.intValue ?? 0
                #expect((1...2).contains(round))
                #expect(lineage?["id"]?.stringValue == "\(lineage?["evolved_from"]?.stringValue ?? "")/evol\(round)")
                #expect(lineage?["method"]?.stringValue != nil && lineage?["parent"]?.stringValue != nil)
                let instruction = row["messages"]?.arrayValue?.first?["content"]?.stringValue ?? ""
                #expect(!instruction.lowercased().contains("rewritten prompt"), "a copied prompt survived: \(instruction)")
            }
        }
    }
}
