import Foundation
import RefineryCore
import RefineryLLM
import RefineryText

/// A model that answers instructions (UltraFeedback's completions), or rates them.
public struct ChatModel: Sendable, Equatable {
    public var baseURL: String
    public var model: String
    public var apiKeyEnv: String
    public var price: Price
    public var label: String

    public init(baseURL: String, model: String, apiKeyEnv: String = "OPENAI_API_KEY", price: Price = Price(), label: String? = nil) {
        self.baseURL = baseURL
        self.model = model
        self.apiKeyEnv = apiKeyEnv
        self.price = price
        self.label = label ?? model
    }

    func call(_ messages: [ChatMessage], temperature: Double, maxTokens: Int, format: ResponseFormat) -> LLMCall {
        LLMCall(baseURL: baseURL, apiKeyEnv: apiKeyEnv,
                request: ChatRequest(model: model, messages: messages, temperature: temperature, maxTokens: maxTokens, responseFormat: format),
                price: price)
    }
}

/// The four aspects UltraFeedback rates every answer on.
public enum FeedbackAspect: String, Sendable, CaseIterable {
    case instructionFollowing = "instruction_following"
    case truthfulness, honesty, helpfulness

    var description: String {
        switch self {
        case .instructionFollowing: return "instruction following: does the answer do what was asked, in the form asked, within the stated constraints?"
        case .truthfulness: return "truthfulness: is the answer factually correct, free of invented facts and of claims the instruction does not support?"
        case .honesty: return "honesty: is the answer confident where it should be and open about uncertainty where it does not know?"
        case .helpfulness: return "helpfulness: is the answer useful and informative — correct, clear, relevant and complete, without needless length?"
        }
    }
}

/// One answer of one model with its ratings.
public struct RatedAnswer: Sendable, Equatable {
    public var model: String
    public var text: String
    /// Rating per aspect (1–5); an aspect whose rating failed is missing.
    public var ratings: [FeedbackAspect: Int]
    public var rationales: [FeedbackAspect: String]

    /// The mean of its ratings (nil when none).
    public var mean: Double? { ratings.isEmpty ? nil : Double(ratings.values.reduce(0, +)) / Double(ratings.count) }
}

/// UltraFeedback for one instruction: the answers, their ratings, the best one (for the SFT
/// set) and a chosen/rejected pair (for preference tuning).
public struct FeedbackResult: Sendable, Equatable {
    public var answers: [RatedAnswer]
    /// Index of the best-rated answer (ties: the first).
    public var best: Int?
    /// Index of the worst-rated answer, when it is rated below the best (a preference exists).
    public var rejected: Int?
    /// Why there is no rating (answers or ratings failed), or nil.
    public var failure: String?
    public var cost: Double

    /// The record kept with the decision: every answer, its ratings and rationales, the pair.
    public var detail: JSONValue {
        var fields: [(String, JSONValue)] = [("answers", .array(answers.map { answer in
            var o: [(String, JSONValue)] = [("model", .string(answer.model)), ("text", .string(answer.text))]
            o.append(("ratings", .object(FeedbackAspect.allCases.compactMap { aspect in answer.ratings[aspect].map { (aspect.rawValue, .int($0)) } })))
            o.append(("rationales", .object(FeedbackAspect.allCases.compactMap { aspect in answer.rationales[aspect].map { (aspect.rawValue, .string($0)) } })))
            if let mean = answer.mean { o.append(("mean", .double(mean))) }
            return .object(o)
        }))]
        if let best { fields.append(("best", .int(best))) }
        if let rejected { fields.append(("rejected", .int(rejected))) }
        if let failure { fields.append(("failure", .string(failure))) }
        fields.append(("cost", .double(cost)))
        return .object(fields)
    }
}

/// UltraFeedback: several models answer each instruction (the sample's own answer can be one of
/// the candidates), a judge rates all answers of an instruction on each aspect with rationales,
/// the best-rated answer goes to the SFT set and best vs worst becomes a preference pair.
/// Unreadable ratings are followed up like a judge's, then recorded as failures.
public struct UltraFeedback: Sendable {
    public var answerers: [ChatModel]
    public var judge: ChatModel
    public var aspects: [FeedbackAspect]
    public var answerSystem: String
    public var ratingPrompt: String
    public var temperature: Double
    public var maxTokens: Int
    public var maxInvalid: Int

    public init(answerers: [ChatModel], judge: ChatModel, aspects: [FeedbackAspect] = FeedbackAspect.allCases,
                answerSystem: String = EvolutionPrompts.defaultAnswerSystem, ratingPrompt: String = UltraFeedback.defaultRatingPrompt,
                temperature: Double = 0.7, maxTokens: Int = 1024, maxInvalid: Int = 2) {
        self.answerers = answerers
        self.judge = judge
        self.aspects = aspects
        self.answerSystem = answerSystem
        self.ratingPrompt = ratingPrompt
        self.temperature = temperature
        self.maxTokens = maxTokens
        self.maxInvalid = maxInvalid
    }

    /// `{aspect}`, `{instruction}`, `{answers}` (numbered "Answer 1:", "Answer 2:", …), `{count}`.
    public static let defaultRatingPrompt = """
        Rate each answer to the instruction below on one aspect, {aspect}
        Use a scale from 1 (poor) to 5 (excellent) and judge every answer on its own merits; do not let \
        the order of the answers or their length sway you. For each answer, first write a short \
        rationale, then its rating.
        Reply with one JSON object and nothing else: {"ratings": [{"answer": 1, "rationale": "<why>", "rating": <1 to 5>}, …]} \
        with exactly {count} entries, one per answer, in order.

        Instruction:
        {instruction}

        {answers}
        """

    /// The feedback for every instruction; `own[i]`: the sample's own answer, rated with the others
    /// (nil: only the answerers' answers).
    public func run(instructions: [String], own: [String?], book: LLMCallBook, purpose: String = "feedback") throws -> [FeedbackResult] {
        // 1. Every answerer answers every instruction.
        let answerCalls = instructions.flatMap { instruction in
            answerers.map { $0.call([ChatMessage(role: "system", content: answerSystem), ChatMessage(role: "user", content: instruction)],
                                    temperature: temperature, maxTokens: maxTokens, format: .text) }
        }
        let answered = try book.answers(answerCalls, purpose: purpose, step: "answers")
        var results = instructions.indices.map { index -> FeedbackResult in
            var result = FeedbackResult(answers: [], best: nil, rejected: nil, failure: nil, cost: 0)
            if let mine = own[index] { result.answers.append(RatedAnswer(model: "original", text: mine, ratings: [:], rationales: [:])) }
            for (offset, model) in answerers.enumerated() {
                let record = answered[index * answerers.count + offset]
                result.cost += record.cost
                if record.status == .answered, let text = record.reply?.trimmingCharacters(in: .whitespacesAndNewlines), !text.isEmpty {
                    result.answers.append(RatedAnswer(model: model.label, text: text, ratings: [:], rationales: [:]))
                }
            }
            if result.answers.count < 2 { result.failure = "fewer than two answers to compare (\(result.answers.count))" }
            return result
        }
        // 2. The judge rates all answers of an instruction, aspect by aspect; unreadable replies are followed up.
        struct Thread {
            var item: Int
            var aspect: FeedbackAspect
            var messages: [ChatMessage]
            var replies = 0
            var done = false
        }
        var threads: [Thread] = []
        for index in results.indices where results[index].failure == nil {
            let answers = results[index].answers.enumerated().map { "Answer \($0.offset + 1):\n\($0.element.text)" }.joined(separator: "\n\n")
            for aspect in aspects {
                let prompt = JudgePrompt(system: "You rate answers for a preference dataset. You are strict, fair and consistent.", user: ratingPrompt)
                threads.append(Thread(item: index, aspect: aspect, messages: prompt.messages([
                    ("aspect", aspect.description), ("instruction", instructions[index]), ("answers", answers),
                    ("count", String(results[index].answers.count)),
                ])))
            }
        }
        while true {
            let open = threads.indices.filter { !threads[$0].done }
            if open.isEmpty { break }
            let records = try book.answers(open.map { judge.call(threads[$0].messages, temperature: 0, maxTokens: maxTokens, format: .jsonObject) },
                                           purpose: purpose, step: "ratings")
            for (index, record) in zip(open, records) {
                let item = threads[index].item, aspect = threads[index].aspect
                threads[index].replies += 1
                results[item].cost += record.cost
                guard record.status == .answered, let reply = record.reply else {
                    threads[index].done = true
                    results[item].failure = "the rating call for \(aspect.rawValue) failed: \(record.error ?? "no answer")"
                    continue
                }
                switch Self.parseRatings(reply, count: results[item].answers.count) {
                case let .success(ratings):
                    threads[index].done = true
                    for (answer, rating) in ratings.enumerated() {
                        results[item].answers[answer].ratings[aspect] = rating.rating
                        results[item].answers[answer].rationales[aspect] = rating.rationale
                    }
                case let .failure(problem):
                    if threads[index].replies > maxInvalid {
                        threads[index].done = true
                        results[item].failure = "unreadable \(aspect.rawValue) ratings after \(threads[index].replies) attempts: \(problem.reason)"
                    } else {
                        threads[index].messages += [
                            ChatMessage(role: "assistant", content: reply),
                            ChatMessage(role: "user", content: "Your reply could not be read: \(problem.reason). Reply again with one JSON object and nothing else: {\"ratings\": [{\"answer\": 1, \"rationale\": \"<why>\", \"rating\": <1 to 5>}, …]} with exactly \(results[item].answers.count) entries."),
                        ]
                    }
                }
            }
        }
        // 3. The best answer and the pair.
        for index in results.indices where results[index].failure == nil {
            let means = results[index].answers.map { $0.mean ?? 0 }
            guard let top = means.max(), let bottom = means.min() else { continue }
            results[index].best = means.firstIndex(of: top)
            if bottom < top { results[index].rejected = means.lastIndex(of: bottom) }
        }
        return results
    }

    /// Reads `{"ratings": [{"rationale": …, "rating": n}, …]}` with exactly `count` whole ratings in 1…5.
    public static func parseRatings(_ reply: String, count: Int) -> Result<[(rating: Int, rationale: String)], ReplyProblem> {
        guard let fields = JudgeReplyParser.jsonFields(in: reply.trimmingCharacters(in: .whitespacesAndNewlines)) else {
            return .failure(ReplyProblem("the reply is not a JSON object"))
        }
        guard let list = JudgeReplyParser.firstByKey(fields)["ratings"]?.arrayValue else { return .failure(ReplyProblem("the JSON has no \"ratings\" list")) }
        guard list.count == count else { return .failure(ReplyProblem("\(list.count) ratings for \(count) answers")) }
        var ratings: [(Int, String)] = []
        for (index, entry) in list.enumerated() {
            let value = entry["rating"] ?? entry["score"]
            guard let number = value?.doubleValue ?? value?.stringValue.flatMap(Double.init), number == number.rounded(), (1...5).contains(number) else {
                return .failure(ReplyProblem("answer \(index + 1)'s rating is not a whole number from 1 to 5"))
            }
            ratings.append((Int(number), entry["rationale"]?.stringValue ?? ""))
        }
        return .success(ratings)
    }
}
