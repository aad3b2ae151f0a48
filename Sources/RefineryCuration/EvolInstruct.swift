import Foundation
import RefineryCore
import RefineryLLM
import RefineryText

/// How an instruction is evolved (Evol-Instruct): five in-depth methods that make it harder, and
/// in-breadth, which makes a new instruction of the same domain.
public enum EvolutionMethod: String, Sendable, CaseIterable {
    case addConstraints = "add_constraints"
    case deepen
    case concretize
    case increaseReasoning = "increase_reasoning"
    case complicateInput = "complicate_input"
    case breadth

    /// What the rewriter is told to do.
    var task: String {
        switch self {
        case .addConstraints: return "Add exactly one more constraint or requirement that the answer must satisfy."
        case .deepen: return "Where the given prompt asks about a matter, ask about it in more depth and breadth."
        case .concretize: return "Replace general concepts with more specific, concrete ones."
        case .increaseReasoning: return "If the prompt can be solved with a few simple thinking steps, rewrite it so that it explicitly calls for multi-step reasoning."
        case .complicateInput: return "Add a piece of input the answer must work with (a table, code, a JSON document or a short text) and make the request depend on it."
        case .breadth: return "Draw inspiration from the given prompt to create a brand-new prompt in the same domain, on a rarer topic, of similar length and difficulty."
        }
    }
}

/// The prompts of Evol-Instruct: the rewriter (the chapter's shape: a given prompt, a method, a
/// rewritten prompt), the answer to an evolved instruction, and the equality check that finds
/// evolutions without information gain. Overridable; placeholders in braces.
public struct EvolutionPrompts: Sendable, Equatable {
    /// `{method}` (the method's task) and `{instruction}`.
    public var rewrite: String
    /// The system message of the answer call (the user message is the evolved instruction).
    public var answerSystem: String
    /// `{first}` and `{second}`: the reply must be "Equal" or "Not Equal".
    public var equality: String

    public init(rewrite: String = EvolutionPrompts.defaultRewrite, answerSystem: String = EvolutionPrompts.defaultAnswerSystem,
                equality: String = EvolutionPrompts.defaultEquality) {
        self.rewrite = rewrite
        self.answerSystem = answerSystem
        self.equality = equality
    }

    public static let defaultRewrite = """
        You rewrite prompts. Make the given prompt harder for capable AI assistants to handle well, while \
        keeping it reasonable: a person must still understand it and be able to answer it. Keep any \
        non-text parts of the given prompt (tables, code, inputs) as they are.
        Method: {method}
        The rewritten prompt should add no more than 10 to 20 words to the given prompt, and it must not \
        mention "given prompt" or "rewritten prompt". Reply with the rewritten prompt only.

        #Given Prompt#:
        {instruction}

        #Rewritten Prompt#:
        """

    public static let defaultAnswerSystem = "Answer the user's request helpfully, accurately and completely."

    public static let defaultEquality = """
        Here are two instructions for an AI assistant. Are they equal: do they ask for the same thing, \
        with the same constraints and the same depth and breadth of inquiry?
        Reply with one word: Equal or Not Equal.

        #First Instruction#:
        {first}

        #Second Instruction#:
        {second}
        """

    func fill(_ template: String, _ values: [(String, String)]) -> String {
        JudgePrompt(system: "", user: template).messages(values)[1].content
    }
}

/// Why an evolution is dropped (the elimination rules).
public enum EvolutionRule: String, Sendable {
    /// The rewriter echoed the prompt's scaffolding ("#Rewritten Prompt#", "given prompt") or gave nothing.
    case copiedPrompt = "copied_prompt"
    /// The evolved instruction asks for the same as the one it came from (the LLM says "Equal", or the text is unchanged).
    case noInformationGain = "no_information_gain"
    /// The answer refuses ("sorry", "as an AI", …) and is short (under 80 words).
    case refusal
    /// The answer is only punctuation and stop words, or under `minAnswerWords` words.
    case tooShort = "too_short"
    /// A call failed (after its retries).
    case callFailed = "call_failed"
}

/// One generation of one sample's evolution.
public struct Evolution: Sendable, Equatable {
    public var round: Int
    public var method: EvolutionMethod
    public var instruction: String
    public var answer: String?
    /// Nil when the evolution survived.
    public var eliminated: EvolutionRule?
    public var cost: Double
}

/// Evol-Instruct over a set of instructions: `rounds` generations, each evolving the last
/// surviving instruction of every sample by a method chosen per (sample, round) from a seeded
/// hash, regenerating the answer, and eliminating failed evolutions by the stated rules. All
/// calls go through the call book, round by round.
public struct EvolInstruct: Sendable {
    public var baseURL: String
    public var model: String
    public var apiKeyEnv: String
    public var price: Price
    public var rounds: Int
    public var methods: [EvolutionMethod]
    public var prompts: EvolutionPrompts
    public var seed: UInt64
    public var temperature: Double
    public var maxTokens: Int
    public var minAnswerWords: Int

    public init(baseURL: String, model: String, apiKeyEnv: String = "OPENAI_API_KEY", price: Price = Price(), rounds: Int = 1,
                methods: [EvolutionMethod] = EvolutionMethod.allCases, prompts: EvolutionPrompts = EvolutionPrompts(), seed: UInt64 = 0,
                temperature: Double = 0.7, maxTokens: Int = 1024, minAnswerWords: Int = 3) {
        self.baseURL = baseURL
        self.model = model
        self.apiKeyEnv = apiKeyEnv
        self.price = price
        self.rounds = rounds
        self.methods = methods.isEmpty ? EvolutionMethod.allCases : methods  // none given: all of them
        self.prompts = prompts
        self.seed = seed
        self.temperature = temperature
        self.maxTokens = maxTokens
        self.minAnswerWords = minAnswerWords
    }

    func call(system: String?, user: String, temperature: Double, maxTokens: Int) -> LLMCall {
        var messages: [ChatMessage] = []
        if let system { messages.append(ChatMessage(role: "system", content: system)) }
        messages.append(ChatMessage(role: "user", content: user))
        return LLMCall(baseURL: baseURL, apiKeyEnv: apiKeyEnv,
                       request: ChatRequest(model: model, messages: messages, temperature: temperature, maxTokens: maxTokens, responseFormat: .text),
                       price: price)
    }

    /// The method for sample `key` in `round`: the same on every run with the same seed.
    public func method(for key: String, round: Int) -> EvolutionMethod {
        methods[Int(StableHash.value("\(seed):\(round):\(key)") % UInt64(methods.count))]
    }

    /// Every sample's generations (eliminated ones included), in order. `keys` identify the
    /// samples (their lineage ids) for the choice of methods.
    public func evolve(_ instructions: [String], keys: [String], book: LLMCallBook, purpose: String = "evolve") throws -> [[Evolution]] {
        var current = instructions
        var history = [[Evolution]](repeating: [], count: instructions.count)
        for round in 1...max(1, rounds) {
            let chosen = keys.map { method(for: $0, round: round) }
            // 1. Rewrite.
            let rewrites = try book.answers(instructions.indices.map { index in
                call(system: nil, user: prompts.fill(prompts.rewrite, [("method", chosen[index].task), ("instruction", current[index])]),
                     temperature: temperature, maxTokens: maxTokens)
            }, purpose: purpose, step: "round \(round) rewrites")
            var evolutions = instructions.indices.map { index -> Evolution in
                let record = rewrites[index]
                var evolution = Evolution(round: round, method: chosen[index], instruction: Self.clean(record.reply ?? ""), answer: nil,
                                          eliminated: nil, cost: record.cost)
                if record.status != .answered { evolution.eliminated = .callFailed } else if Self.copiesPrompt(evolution.instruction) {
                    evolution.eliminated = .copiedPrompt
                } else if TextNormalization.fuzzy.apply(evolution.instruction) == TextNormalization.fuzzy.apply(current[index]) {
                    evolution.eliminated = .noInformationGain
                }
                return evolution
            }
            // 2. Is it new? (in-breadth makes a new instruction by design; the check still finds copies).
            let open = evolutions.indices.filter { evolutions[$0].eliminated == nil }
            let checks = try book.answers(open.map { index in
                call(system: nil, user: prompts.fill(prompts.equality, [("first", current[index]), ("second", evolutions[index].instruction)]),
                     temperature: 0, maxTokens: 8)
            }, purpose: purpose, step: "round \(round) novelty checks")
            for (index, record) in zip(open, checks) {
                evolutions[index].cost += record.cost
                guard record.status == .answered, let reply = record.reply else { evolutions[index].eliminated = .callFailed; continue }
                let verdict = reply.trimmingCharacters(in: .whitespacesAndNewlines.union(.punctuationCharacters)).lowercased()
                if verdict == "equal" || verdict.hasPrefix("equal") { evolutions[index].eliminated = .noInformationGain }
            }
            // 3. The answer to each evolved instruction.
            let survivors = evolutions.indices.filter { evolutions[$0].eliminated == nil }
            let answers = try book.answers(survivors.map { index in
                call(system: prompts.answerSystem, user: evolutions[index].instruction, temperature: temperature, maxTokens: maxTokens)
            }, purpose: purpose, step: "round \(round) answers")
            for (index, record) in zip(survivors, answers) {
                evolutions[index].cost += record.cost
                guard record.status == .answered, let reply = record.reply else { evolutions[index].eliminated = .callFailed; continue }
                let answer = reply.trimmingCharacters(in: .whitespacesAndNewlines)
                evolutions[index].answer = answer
                evolutions[index].eliminated = rule(forAnswer: answer)
            }
            for index in evolutions.indices {
                history[index].append(evolutions[index])
                if evolutions[index].eliminated == nil { current[index] = evolutions[index].instruction }
            }
        }
        return history
    }

    /// The rule an answer breaks, if any.
    func rule(forAnswer answer: String) -> EvolutionRule? {
        let words = answer.split(whereSeparator: { $0.isWhitespace }).count
        if words < 80, answer.lowercased().contains("sorry") || SampleFilter.refusalPatterns.contains(where: {
            answer.range(of: $0, options: [.regularExpression, .caseInsensitive]) != nil
        }) { return .refusal }
        let content = TextWords.of(answer).filter { !TextWords.isStopWord($0) }
        if content.isEmpty || words < minAnswerWords { return .tooShort }
        return nil
    }

    /// Whether a rewrite echoes the rewriter's scaffolding or is empty.
    static func copiesPrompt(_ text: String) -> Bool {
        let lower = text.lowercased()
        return text.isEmpty || ["#given prompt#", "#rewritten prompt#", "given prompt", "rewritten prompt"].contains { lower.contains($0) }
    }

    /// The rewrite without a leading "#Rewritten Prompt#:" label or surrounding quotes.
    static func clean(_ reply: String) -> String {
        var text = reply.trimmingCharacters(in: .whitespacesAndNewlines)
        for label in ["#Rewritten Prompt#:", "Rewritten Prompt:"] where text.hasPrefix(label) {
            text = String(text.dropFirst(label.count)).trimmingCharacters(in: .whitespacesAndNewlines)
        }
        if text.count >= 2, text.hasPrefix("\""), text.hasSuffix("\"") { text = String(text.dropFirst().dropLast()) }
        return text
    }
}
