import Foundation
import RefineryCore
import RefineryCuration
import RefineryLLM
import RefineryStore
import RefineryText
import Testing

/// An executor that answers calls from a function, stores the answers like the real ones, and
/// counts what it was asked: the in-memory seam for the judge's logic.
final class ScriptedExecutor: LLMCallExecutor, @unchecked Sendable {
    let answer: (LLMCall) -> String?
    private(set) var asked: [LLMCall] = []

    init(_ answer: @escaping (LLMCall) -> String?) { self.answer = answer }

    func execute(_ pending: [(id: Int64, call: LLMCall)], purpose: String, step: String?, store: RunStore) throws {
        for (id, call) in pending {
            asked.append(call)
            let reply = answer(call)
            try store.commitCall(id: id, outcome: LLMCallOutcomeRow(answered: reply != nil, reply: reply, finishReason: "stop",
                                                                    error: reply == nil ? "8 attempts failed, the last with: server error 500" : nil,
                                                                    promptTokens: 10, completionTokens: 5, cost: 0.001, attempts: 1),
                                 workerID: nil)
        }
    }
}

@Suite struct JudgeTests {
    static func store() throws -> RunStore {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("judge-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return try RunStore(path: dir.appendingPathComponent("state.db").path)
    }

    static let judge = JudgeModel(baseURL: "http://127.0.0.1:9/v1", model: "judge-a")

    // MARK: Reading replies

    @Test func wellFormedRubricRepliesAreRead() {
        let cases: [(String, Double)] = [
            (#"{"feedback": "Clear and correct.", "score": 4}"#, 4),
            (#"{"feedback": "Fine.", "score": "3"}"#, 3),
            (#"{"feedback": "Fine.", "score": 2.0}"#, 2),
            ("```json\n{\"feedback\": \"ok\", \"score\": 1}\n```", 1),
            ("Feedback: the answer is thin.\nTotal rating: 2", 2),
        ]
        for (reply, expected) in cases {
            guard case let .success(.score(score, feedback)) = JudgeReplyParser.rubric(reply, scale: 1...4) else {
                Issue.record("not read: \(reply)")
                continue
            }
            #expect(score == expected, "\(reply)")
            #expect(!feedback.isEmpty, "the feedback is kept: \(reply)")
        }
    }

    /// The corpus of malformed judge replies: none of them may ever become a score.
    static let malformedRubricReplies = [
        #"{"feedback": "Looks good."}"#,                                   // missing score
        #"{"feedback": "Great.", "score": 7}"#,                            // out of range
        #"{"feedback": "Bad.", "score": 0}"#,                              // out of range
        #"{"feedback": "Hmm.", "score": -1}"#,                             // out of range
        #"{"feedback": "Torn.", "score": 3, "score": 4}"#,                 // two scores
        #"{"feedback": "Torn.", "score": [3, 4]}"#,                        // two scores
        "Feedback: decent.\nTotal rating: 3\nOn reflection, Total rating: 4", // two scores
        #"{"feedback": "Between.", "score": 2.5}"#,                        // not a whole number
        #"{"feedback": "Odd.", "score": "three"}"#,                        // not a number
        "The answer is accurate and well organised, I would rate it highly.", // prose only
        "",                                                                 // empty
        #"{"feedback": "cut off", "sco"#,                                  // truncated JSON
    ]

    @Test(arguments: malformedRubricReplies)
    func aMalformedRubricReplyIsNeverAScore(reply: String) {
        guard case let .failure(problem) = JudgeReplyParser.rubric(reply, scale: 1...4) else {
            Issue.record("read as a score: \(reply)")
            return
        }
        #expect(!problem.reason.isEmpty)
    }

    @Test func pairwiseRepliesAreReadStrictly() {
        #expect(JudgeReplyParser.pairwise(#"{"feedback": "A is better", "winner": "A"}"#) == .success(.winner("A", feedback: "A is better")))
        #expect(JudgeReplyParser.pairwise(#"{"feedback": "", "winner": "b"}"#) == .success(.winner("B", feedback: "")))
        #expect(JudgeReplyParser.pairwise(#"{"feedback": "same", "winner": "tie"}"#) == .success(.winner("tie", feedback: "same")))
        for bad in [#"{"feedback": "x", "winner": "both"}"#, #"{"feedback": "x"}"#, "A is better.", ""] {
            guard case .failure = JudgeReplyParser.pairwise(bad) else {
                Issue.record("read as a verdict: \(bad)")
                continue
            }
        }
    }

    // MARK: The judge over the call book

    /// Every malformed reply is answered with what was wrong and asked again, `maxInvalid` times,
    /// then recorded as a failure with no score.
    @Test func malformedRepliesAreRetriedThenRecordedAsFailures() throws {
        let items = Self.malformedRubricReplies.indices.map { JudgeItem(instruction: "Question \($0)?", answer: "Answer number \($0).") }
        // Each item's judge keeps giving that item's malformed reply.
        let executor = ScriptedExecutor { call in
            let prompt = call.request.messages[1].content
            guard let index = items.firstIndex(where: { prompt.contains($0.instruction) }) else { return nil }
            return Self.malformedRubricReplies[index]
        }
        let judge = LLMJudge(judges: [Self.judge], maxInvalid: 2)
        let judgments = try judge.judge(items, book: LLMCallBook(store: try Self.store(), executor: executor))
        for (index, judgment) in judgments.enumerated() {
            #expect(judgment.score == nil, "reply \(index) became a score")
            #expect(judgment.failure?.contains("unreadable reply after 3 attempts") == true, "\(judgment.failure ?? "no failure")")
            #expect(judgment.opinions[0].calls == 3, "asked once, then followed up twice")
        }
        #expect(executor.asked.count == items.count * 3)
        // A follow-up carries the unreadable reply and what was wrong with it.
        let followUps = executor.asked.filter { $0.request.messages.count == 4 }
        #expect(followUps.count == items.count)
        #expect(followUps.allSatisfy { $0.request.messages[3].content.hasPrefix("Your reply could not be read:") })
    }

    @Test func aReplyThatIsReadableOnTheSecondTryCounts() throws {
        let executor = ScriptedExecutor { call in
            call.request.messages.count == 2 ? "I like it." : #"{"feedback": "Good now.", "score": 3}"#
        }
        let judgments = try LLMJudge(judges: [Self.judge]).judge([JudgeItem(instruction: "Q?", answer: "A.")],
                                                                   book: LLMCallBook(store: try Self.store(), executor: executor))
        #expect(judgments[0].score == 3)
        #expect(judgments[0].opinions[0].calls == 2)
        #expect(judgments[0].opinions[0].rationale == "Good now.")
    }

    @Test func aFailedCallIsAFailureNotAScore() throws {
        let judgments = try LLMJudge(judges: [Self.judge]).judge([JudgeItem(instruction: "Q?", answer: "A.")],
                                                                   book: LLMCallBook(store: try Self.store(), executor: ScriptedExecutor { _ in nil }))
        #expect(judgments[0].score == nil)
        #expect(judgments[0].failure?.contains("the call failed") == true)
    }

    /// A sample without an instruction or an answer (an empty conversation, a question left
    /// unanswered) is a failure that names what is missing, and no call is paid for it.
    @Test func aSampleWithNothingToJudgeFailsWithoutACall() throws {
        let executor = ScriptedExecutor { _ in #"{"feedback": "Fine.", "score": 4}"# }
        let jury = [Self.judge, JudgeModel(baseURL: "http://127.0.0.1:9/v1", model: "judge-b")]
        let items = [JudgeItem(instruction: "Q?", answer: "A."), JudgeItem(instruction: "Q?", answer: " \n"),
                     JudgeItem(instruction: "", answer: "A.")]
        let judgments = try LLMJudge(judges: jury).judge(items, book: LLMCallBook(store: try Self.store(), executor: executor))
        #expect(judgments.map(\.score) == [4, nil, nil])
        #expect(judgments[1].failure?.contains("nothing to judge: the sample has no answer") == true, "\(judgments[1].failure ?? "")")
        #expect(judgments[2].failure?.contains("nothing to judge: the sample has no instruction") == true, "\(judgments[2].failure ?? "")")
        #expect(executor.asked.count == 2, "one call per judge, for the first sample only")
        let pairwise = ScriptedExecutor { _ in #"{"feedback": "", "winner": "A"}"# }
        let compared = try LLMJudge(mode: .pairwise, judges: [Self.judge])
            .judge([JudgeItem(instruction: "Q?", answer: "A.", candidate: "")], book: LLMCallBook(store: try Self.store(), executor: pairwise))
        #expect(compared[0].verdict == nil && compared[0].failure?.contains("no candidate answer") == true)
        #expect(pairwise.asked.isEmpty)
    }

    /// Pairwise judging runs both orders: a judge that always prefers the first position yields
    /// ties only; a consistent one yields its winner whichever order the answers came in.
    @Test func swappedOrdersCancelPositionBias() throws {
        let items = (0..<6).map { JudgeItem(instruction: "Q\($0)?", answer: "short \($0)", candidate: "a much longer answer number \($0)") }
        let biased = ScriptedExecutor { _ in #"{"feedback": "first is better", "winner": "A"}"# }
        let judge = LLMJudge(mode: .pairwise, judges: [Self.judge])
        for judgment in try judge.judge(items, book: LLMCallBook(store: try Self.store(), executor: biased)) {
            #expect(judgment.verdict == "tie")
            #expect(judgment.opinions[0].orderWinners == ["A", "A"])
        }
        // Prefers the longer answer wherever it stands.
        let consistent = ScriptedExecutor { call in
            let prompt = call.request.messages[1].content
            let a = prompt.components(separatedBy: "Answer A:\n")[1].components(separatedBy: "\n\nAnswer B:")[0]
            let b = prompt.components(separatedBy: "Answer B:\n")[1]
            return a.count > b.count ? #"{"feedback": "", "winner": "A"}"# : #"{"feedback": "", "winner": "B"}"#
        }
        for judgment in try judge.judge(items, book: LLMCallBook(store: try Self.store(), executor: consistent)) {
            #expect(judgment.verdict == "candidate")
            #expect(judgment.opinions[0].orderWinners == ["B", "A"])
        }
        #expect(consistent.asked.count == items.count * 2)
    }

    @Test func aJuryAggregatesAndItsAgreementIsMeasured() throws {
        let judges = [JudgeModel(baseURL: "http://127.0.0.1:9/v1", model: "a"), JudgeModel(baseURL: "http://127.0.0.1:9/v1", model: "b"),
                      JudgeModel(baseURL: "http://127.0.0.1:9/v1", model: "c")]
        let scores = ["a": [1, 2, 3, 4, 4], "b": [1, 2, 3, 3, 4], "c": [2, 2, 4, 3, 1]]
        let items = (0..<5).map { JudgeItem(instruction: "Q\($0)?", answer: "A\($0).") }
        let executor = ScriptedExecutor { call in
            let index = items.firstIndex { call.request.messages[1].content.contains($0.instruction) } ?? 0
            return #"{"feedback": "ok", "score": \#(scores[call.request.model]?[index] ?? 0)}"#
        }
        let book = LLMCallBook(store: try Self.store(), executor: executor)
        let mean = try LLMJudge(judges: judges, aggregate: .mean).judge(items, book: book)
        let expectedMeans: [Double?] = [4.0 / 3, 2, 10.0 / 3, 10.0 / 3, 3]
        #expect(mean.map(\.score) == expectedMeans)
        let median = try LLMJudge(judges: judges, aggregate: .median).judge(items, book: book)
        let expectedMedians: [Double?] = [1, 2, 3, 3, 4]
        #expect(median.map(\.score) == expectedMedians)
        let majority = try LLMJudge(judges: judges, aggregate: .majority).judge(items, book: book)
        #expect(majority.map(\.score) == expectedMedians)
        #expect(executor.asked.count == 15, "the second and third aggregation ask nothing again")
        // Cohen's kappa of a and b: observed 4/5; chance (.2·.2 + .2·.2 + .2·.4 + .4·.2) = .24 → (.8 − .24)/.76.
        let agreement = try #require(RaterAgreement(scores["a"]!.map { String($0) }, scores["b"]!.map { String($0) }))
        #expect(agreement.count == 5 && abs(agreement.percent - 0.8) < 1e-12)
        #expect(abs((agreement.kappa ?? 0) - 0.56 / 0.76) < 1e-12)
        #expect(RaterAgreement(["1", "1"], ["1", "1"])?.kappa == nil, "kappa is undefined when chance agreement is total")
        #expect(RaterAgreement([nil, "1"], ["2", nil]) == nil)
    }

    @Test func lengthNormalisationRemovesTheLengthTrend() throws {
        // Scores rise with the answer's length alone.
        let items = (1...6).map { n in JudgeItem(instruction: "Q\(n)?", answer: Array(repeating: "word", count: n * n).joined(separator: " ")) }
        let executor = ScriptedExecutor { call in
            let words = call.request.messages[1].content.components(separatedBy: "word").count - 1
            return #"{"feedback": "", "score": \#(words > 20 ? 4 : words > 5 ? 3 : 2)}"#
        }
        let judgments = try LLMJudge(judges: [Self.judge], lengthNormalize: true).judge(items, book: LLMCallBook(store: try Self.store(), executor: executor))
        let raw = judgments.compactMap(\.score), normalized = judgments.compactMap(\.normalizedScore)
        #expect(raw.count == 6 && normalized.count == 6)
        #expect(abs(raw.reduce(0, +) - normalized.reduce(0, +)) < 1e-9, "the mean is kept")
        #expect((raw.max()! - raw.min()!) > (normalized.max()! - normalized.min()!), "the spread due to length shrinks")
    }

    // MARK: The call book

    @Test func theBookNeverAsksAnAnsweredCallTwiceAndRetriesAFailureOncePerProcess() throws {
        let store = try Self.store()
        var fail = true
        let executor = ScriptedExecutor { call in
            if call.request.model == "flaky" && fail { return nil }
            return "answer to \(call.request.messages.last?.content ?? "")"
        }
        func call(_ text: String, model: String = "m") -> LLMCall {
            LLMCall(baseURL: "http://127.0.0.1:9/v1", request: ChatRequest(model: model, messages: [ChatMessage(role: "user", content: text)]))
        }
        let book = LLMCallBook(store: store, executor: executor)
        let first = try book.answers([call("a"), call("b"), call("a"), call("c", model: "flaky")], purpose: "test")
        #expect(first.map(\.status) == [.answered, .answered, .answered, .failed])
        #expect(first[0].reply == "answer to a" && first[0].id == first[2].id)
        #expect(executor.asked.count == 3, "a repeated call is asked once")
        _ = try book.answers([call("a"), call("c", model: "flaky")], purpose: "test")
        #expect(executor.asked.count == 3, "answered and (in this process) failed calls are not asked again")
        // A new process (a new book) tries the failure once more; the answered calls stay paid.
        fail = false
        let again = try LLMCallBook(store: store, executor: executor).answers([call("a"), call("c", model: "flaky")], purpose: "test")
        #expect(again.map(\.status) == [.answered, .answered])
        #expect(executor.asked.count == 4)
        // Another key or price is the same call; another endpoint or model is not.
        var priced = call("a")
        priced.apiKeyEnv = "OTHER_KEY"
        priced.price = Price(inputPerMillion: 5, outputPerMillion: 15)
        #expect(priced.cacheKey == call("a").cacheKey)
        #expect(call("a", model: "n").cacheKey != call("a").cacheKey)
        #expect(LLMCall(baseURL: "http://127.0.0.1:10/v1", request: call("a").request).cacheKey != call("a").cacheKey)
    }

    @Test func aCallSurvivesItsStoredForm() throws {
        let call = LLMCall(baseURL: "https://api.example.com/v1/", apiKeyEnv: "KEY", request: ChatRequest(
            model: "m", messages: [ChatMessage(role: "system", content: "s"), ChatMessage(role: "user", content: "u {x}")],
            temperature: 0.2, maxTokens: 77, responseFormat: .jsonObject), price: Price(inputPerMillion: 1, outputPerMillion: 2))
        let back = try LLMCall(json: try JSONValue.parse(call.json.compactText))
        #expect(back == call)
        #expect(back.baseURL == "https://api.example.com/v1")
        for broken in [#"{"base_url": "ftp://x", "api_key_env": "K", "request": {}}"#,
                       #"{"base_url": "http://x/v1", "api_key_env": "K", "request": {"model": "m", "messages": []}}"#,
                       #"{"base_url": "http://x/v1", "api_key_env": "K", "request": {"model": "m", "messages": [{"role": "wizard", "content": "x"}]}}"#,
                       #"{"base_url": "http://x/v1", "api_key_env": "K", "price_input": -1, "request": {"model": "m", "messages": [{"role": "user", "content": "x"}]}}"#] {
            #expect(throws: LLMCallRefusal.self) { try LLMCall(json: try JSONValue.parse(broken)) }
        }
    }
}
