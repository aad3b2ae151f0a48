import Foundation
import RefineryCore
import RefineryLLM
import RefineryText

/// One judge of a jury: a model at an endpoint (its `label` names it in records and reports).
public typealias JudgeModel = ChatModel

/// What is judged: an instruction and its answer, and for a comparison the other answer.
public struct JudgeItem: Sendable, Equatable {
    public var instruction: String
    public var answer: String
    /// The answer compared with `answer` (pairwise).
    public var candidate: String?

    public init(instruction: String, answer: String, candidate: String? = nil) {
        self.instruction = instruction
        self.answer = answer
        self.candidate = candidate
    }
}

/// One judge's opinion of one item.
public struct JudgeOpinion: Sendable, Equatable {
    public var judge: String
    /// The rubric score (nil: pairwise, or failed).
    public var score: Double?
    /// Pairwise: "answer" (the sample's own wins in both orders), "candidate", or "tie" (the orders disagree, or both say tie).
    public var verdict: String?
    /// The feedback written before the score or verdict (both orders' for a comparison).
    public var rationale: String
    /// Why there is no score or verdict (unreadable replies after the follow-ups, or a failed call).
    public var failure: String?
    /// Dollars of its calls (whenever they were paid).
    public var cost: Double
    /// Calls it took (follow-ups and both orders included).
    public var calls: Int
    /// Pairwise: the raw winner of each order (answer first, then candidate first).
    public var orderWinners: [String]
}

/// A jury's judgment of one item.
public struct Judgment: Sendable, Equatable {
    public var opinions: [JudgeOpinion]
    /// The jury's score (rubric), by the aggregate, over the judges that gave one.
    public var score: Double?
    /// The score with the length effect removed (when length normalisation is on).
    public var normalizedScore: Double?
    /// The jury's verdict (pairwise).
    public var verdict: String?
    /// Set when no judge gave a score or verdict.
    public var failure: String?

    /// Dollars of all its calls.
    public var cost: Double { opinions.map(\.cost).reduce(0, +) }

    /// The score filters compare: the normalised one when there is one.
    public var effectiveScore: Double? { normalizedScore ?? score }

    /// The record kept with the decision (`data why`, the report).
    public var detail: JSONValue {
        var fields: [(String, JSONValue)] = []
        if let score { fields.append(("score", .double(score))) }
        if let normalizedScore { fields.append(("normalized_score", .double(normalizedScore))) }
        if let verdict { fields.append(("verdict", .string(verdict))) }
        if let failure { fields.append(("failure", .string(failure))) }
        fields.append(("cost", .double(cost)))
        fields.append(("judges", .array(opinions.map { opinion in
            var o: [(String, JSONValue)] = [("judge", .string(opinion.judge))]
            if let score = opinion.score { o.append(("score", .double(score))) }
            if let verdict = opinion.verdict { o.append(("verdict", .string(verdict))) }
            if !opinion.orderWinners.isEmpty { o.append(("orders", .array(opinion.orderWinners.map { .string($0) }))) }
            if let failure = opinion.failure { o.append(("failure", .string(failure))) }
            o.append(("rationale", .string(opinion.rationale)))
            o.append(("cost", .double(opinion.cost)))
            o.append(("calls", .int(opinion.calls)))
            return .object(o)
        })))
        return .object(fields)
    }
}

/// An LLM judge, or a jury of several: the rubric (feedback, then a score) or a pairwise
/// comparison asked in both orders so that position bias cancels (a verdict only when both
/// orders agree, else a tie). An unreadable reply is answered with what was wrong and asked again
/// up to `maxInvalid` times, then recorded as a failure — never as a score. Every call goes
/// through the call book, so nothing is asked twice.
public struct LLMJudge: Sendable {
    public var mode: JudgeMode
    public var judges: [JudgeModel]
    public var prompt: JudgePrompt
    public var scale: ClosedRange<Int>
    public var aggregate: JuryAggregate
    public var maxInvalid: Int
    public var temperature: Double
    public var maxTokens: Int
    /// Remove the part of the rubric score that a linear fit on log(answer words) explains.
    public var lengthNormalize: Bool

    public init(mode: JudgeMode = .rubric, judges: [JudgeModel], prompt: JudgePrompt? = nil, scale: ClosedRange<Int> = 1...4,
                aggregate: JuryAggregate = .mean, maxInvalid: Int = 2, temperature: Double = 0, maxTokens: Int = 512, lengthNormalize: Bool = false) {
        self.mode = mode
        self.judges = judges
        self.prompt = prompt ?? (mode == .rubric ? .rubric(scale: scale) : .pairwise)
        self.scale = scale
        self.aggregate = aggregate
        self.maxInvalid = maxInvalid
        self.temperature = temperature
        self.maxTokens = maxTokens
        self.lengthNormalize = lengthNormalize
    }

    /// A conversation with one judge about one item in one order.
    struct Thread {
        var item: Int
        var judge: Int
        /// Pairwise: 0 the sample's answer as A, 1 the candidate as A.
        var order: Int
        var messages: [ChatMessage]
        var replies = 0
        var cost = 0.0
        var reading: JudgeReading?
        var failure: String?
    }

    /// The judgment of every item, in order. Calls are made round by round: every first question,
    /// then the follow-ups of unreadable replies.
    public func judge(_ items: [JudgeItem], book: LLMCallBook, purpose: String = "judge") throws -> [Judgment] {
        guard !judges.isEmpty else { throw CoreError("a judge needs at least one model") }
        var threads: [Thread] = []
        for (index, item) in items.enumerated() {
            if let missing = missingText(of: item) {
                // Nothing to ask about: a failure from the start, and no call is paid for.
                for judge in judges.indices {
                    threads.append(Thread(item: index, judge: judge, order: 0, messages: [], failure: "nothing to judge: the sample has no \(missing)"))
                }
                continue
            }
            for judge in judges.indices {
                if mode == .rubric {
                    threads.append(Thread(item: index, judge: judge, order: 0,
                                          messages: prompt.messages([("instruction", item.instruction), ("answer", item.answer)])))
                } else {
                    guard let candidate = item.candidate else { throw CoreError("item \(index + 1) has no candidate answer to compare with") }
                    for (order, (a, b)) in [(item.answer, candidate), (candidate, item.answer)].enumerated() {
                        threads.append(Thread(item: index, judge: judge, order: order,
                                              messages: prompt.messages([("instruction", item.instruction), ("answer_a", a), ("answer_b", b)])))
                    }
                }
            }
        }
        while true {
            let open = threads.indices.filter { threads[$0].reading == nil && threads[$0].failure == nil }
            if open.isEmpty { break }
            let calls = open.map { index -> LLMCall in
                let judge = judges[threads[index].judge]
                return LLMCall(baseURL: judge.baseURL, apiKeyEnv: judge.apiKeyEnv,
                               request: ChatRequest(model: judge.model, messages: threads[index].messages, temperature: temperature,
                                                    maxTokens: maxTokens, responseFormat: .jsonObject),
                               price: judge.price)
            }
            let records = try book.answers(calls, purpose: purpose)
            for (index, record) in zip(open, records) {
                threads[index].replies += 1
                threads[index].cost += record.cost
                guard record.status == .answered, let reply = record.reply else {
                    threads[index].failure = "the call failed: \(record.error ?? "no answer")"
                    continue
                }
                let parsed = mode == .rubric ? JudgeReplyParser.rubric(reply, scale: scale) : JudgeReplyParser.pairwise(reply)
                switch parsed {
                case let .success(reading):
                    threads[index].reading = reading
                case let .failure(problem):
                    if threads[index].replies > maxInvalid {
                        threads[index].failure = "unreadable reply after \(threads[index].replies) attempt\(threads[index].replies == 1 ? "" : "s"): \(problem.reason)"
                    } else {
                        threads[index].messages += [ChatMessage(role: "assistant", content: reply),
                                                    ChatMessage(role: "user", content: JudgePrompt.followUp(problem: problem, mode: mode, scale: scale))]
                    }
                }
            }
        }
        var byItem = [[Thread]](repeating: [], count: items.count)
        for thread in threads { byItem[thread.item].append(thread) }
        var judgments = byItem.map { itemThreads in
            let opinions = judges.indices.map { judge in opinion(judge: judge, threads: itemThreads.filter { $0.judge == judge }) }
            return combine(opinions)
        }
        if lengthNormalize && mode == .rubric { normalizeLength(&judgments, items: items) }
        return judgments
    }

    /// What `item` lacks for this mode's question ("instruction", "answer", "candidate answer"), if anything.
    func missingText(of item: JudgeItem) -> String? {
        func blank(_ text: String) -> Bool { text.allSatisfy(\.isWhitespace) }
        if blank(item.instruction) { return "instruction" }
        if blank(item.answer) { return "answer" }
        if mode == .pairwise, let candidate = item.candidate, blank(candidate) { return "candidate answer" }
        return nil
    }

    func opinion(judge: Int, threads: [Thread]) -> JudgeOpinion {
        var opinion = JudgeOpinion(judge: judges[judge].label, score: nil, verdict: nil, rationale: "", failure: nil,
                                   cost: threads.map(\.cost).reduce(0, +), calls: threads.map(\.replies).reduce(0, +), orderWinners: [])
        if let failed = threads.first(where: { $0.failure != nil }) {
            opinion.failure = failed.failure
            return opinion
        }
        switch mode {
        case .rubric:
            if case let .score(score, feedback)? = threads.first?.reading {
                opinion.score = score
                opinion.rationale = feedback
            }
        case .pairwise:
            var winners: [String] = [], rationales: [String] = []
            for thread in threads.sorted(by: { $0.order < $1.order }) {
                guard case let .winner(winner, feedback)? = thread.reading else { continue }
                winners.append(winner)
                rationales.append(feedback)
            }
            opinion.orderWinners = winners
            opinion.rationale = rationales.enumerated().map { "[\($0.offset == 0 ? "answer as A" : "candidate as A")] \($0.element)" }
                .joined(separator: "\n")
            // In the sample's terms: order 0 has the answer as A, order 1 the candidate as A.
            let first = winners.first.map { $0 == "A" ? "answer" : $0 == "B" ? "candidate" : "tie" }
            let second = winners.count > 1 ? (winners[1] == "A" ? "candidate" : winners[1] == "B" ? "answer" : "tie") : nil
            opinion.verdict = (first != nil && first == second) ? first : "tie"
        }
        return opinion
    }

    func combine(_ opinions: [JudgeOpinion]) -> Judgment {
        var judgment = Judgment(opinions: opinions, score: nil, normalizedScore: nil, verdict: nil, failure: nil)
        switch mode {
        case .rubric:
            let scores = opinions.compactMap(\.score)
            guard !scores.isEmpty else {
                judgment.failure = opinions.compactMap(\.failure).first ?? "no judge gave a score"
                return judgment
            }
            judgment.score = Self.aggregate(scores, by: aggregate)
        case .pairwise:
            let verdicts = opinions.compactMap(\.verdict)
            guard !verdicts.isEmpty else {
                judgment.failure = opinions.compactMap(\.failure).first ?? "no judge gave a verdict"
                return judgment
            }
            let counts = Dictionary(verdicts.map { ($0, 1) }, uniquingKeysWith: +)
            let best = counts.values.max() ?? 0
            let leaders = counts.filter { $0.value == best }.map(\.key)
            judgment.verdict = leaders.count == 1 ? leaders[0] : "tie"
        }
        return judgment
    }

    /// The jury's score: the mean, the median, or the most frequent score (ties: their median).
    public static func aggregate(_ scores: [Double], by rule: JuryAggregate) -> Double {
        switch rule {
        case .mean:
            return scores.reduce(0, +) / Double(scores.count)
        case .median:
            return median(scores)
        case .majority:
            let counts = Dictionary(scores.map { ($0, 1) }, uniquingKeysWith: +)
            let best = counts.values.max() ?? 0
            return median(counts.filter { $0.value == best }.map(\.key))
        }
    }

    static func median(_ values: [Double]) -> Double {
        let sorted = values.sorted()
        let middle = sorted.count / 2
        return sorted.count % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
    }

    /// Fits score = a + b·log(words of the answer) over the scored items and removes b's part
    /// around the mean length, so long answers gain nothing for their length alone.
    func normalizeLength(_ judgments: inout [Judgment], items: [JudgeItem]) {
        let scored = judgments.indices.filter { judgments[$0].score != nil }
        guard scored.count >= 2 else { return }
        let x = scored.map { log(Double(max(1, TextWords.of(items[$0].answer).count))) }
        let y = scored.map { judgments[$0].score ?? 0 }
        let meanX = x.reduce(0, +) / Double(x.count), meanY = y.reduce(0, +) / Double(y.count)
        let sxx = x.map { ($0 - meanX) * ($0 - meanX) }.reduce(0, +)
        let slope = sxx > 0 ? zip(x, y).map { ($0 - meanX) * ($1 - meanY) }.reduce(0, +) / sxx : 0
        for (index, logWords) in zip(scored, x) {
            judgments[index].normalizedScore = (judgments[index].score ?? 0) - slope * (logWords - meanX)
        }
    }
}
