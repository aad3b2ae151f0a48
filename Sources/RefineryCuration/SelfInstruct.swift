import Foundation
import RefineryCore
import RefineryLLM
import RefineryText

/// A taxonomy to steer synthesis: every prompt names one topic and one task type, in turn.
public struct TaskTaxonomy: Sendable, Equatable {
    public var topics: [String]
    public var taskTypes: [String]

    public init(topics: [String], taskTypes: [String]) {
        self.topics = topics
        self.taskTypes = taskTypes
    }

    /// The (topic, task type) pairs, topic-major.
    public var cells: [(topic: String, taskType: String)] {
        topics.flatMap { topic in taskTypes.map { (topic, $0) } }
    }
}

/// One synthesized instruction with its answer and where it came from.
public struct SynthesizedTask: Sendable, Equatable {
    public var instruction: String
    public var answer: String
    public var round: Int
    /// The pool instructions shown as examples in its prompt.
    public var examples: [String]
    public var topic: String?
    public var taskType: String?
    /// Highest ROUGE-L F with anything in the pool when it was accepted.
    public var closest: Double
}

/// Why candidate instructions were not kept, and how many.
public struct SynthesisTally: Sendable, Equatable {
    public var proposed = 0
    public var accepted = 0
    public var tooSimilar = 0
    public var badLength = 0
    public var unsuitable = 0
    public var unanswered = 0
    public var unreadable = 0
}

/// Self-instruct: prompts that show a few instructions from the pool (seed tasks first, then
/// generated ones) ask for new ones; each candidate is kept only when its ROUGE-L F with every
/// instruction already in the pool stays below `maxSimilarity`, then answered. Rounds go on until
/// `count` tasks are kept or `maxRounds` pass. Everything depends only on the seed, the inputs and
/// the (cached) replies, so a resumed run makes exactly the same prompts.
public struct SelfInstruct: Sendable {
    public var generator: ChatModel
    public var count: Int
    public var perPrompt: Int
    public var examplesPerPrompt: Int
    public var promptsPerRound: Int
    public var maxRounds: Int
    public var maxSimilarity: Double
    public var taxonomy: TaskTaxonomy?
    public var seed: UInt64
    public var temperature: Double
    public var maxTokens: Int
    public var answerSystem: String
    public var prompt: String

    public init(generator: ChatModel, count: Int, perPrompt: Int = 5, examplesPerPrompt: Int = 4, promptsPerRound: Int = 8, maxRounds: Int = 50,
                maxSimilarity: Double = 0.7, taxonomy: TaskTaxonomy? = nil, seed: UInt64 = 0, temperature: Double = 1.0, maxTokens: Int = 1024,
                answerSystem: String = EvolutionPrompts.defaultAnswerSystem, prompt: String = SelfInstruct.defaultPrompt) {
        self.generator = generator
        self.count = count
        self.perPrompt = perPrompt
        self.examplesPerPrompt = examplesPerPrompt
        self.promptsPerRound = promptsPerRound
        self.maxRounds = maxRounds
        self.maxSimilarity = maxSimilarity
        self.taxonomy = taxonomy
        self.seed = seed
        self.temperature = temperature
        self.maxTokens = maxTokens
        self.answerSystem = answerSystem
        self.prompt = prompt
    }

    /// `{count}`, `{examples}` (numbered), `{focus}` (the taxonomy's topic and task type, or nothing).
    public static let defaultPrompt = """
        Come up with {count} new, diverse task instructions for an AI assistant. They will be used to \
        teach a language model to follow instructions.
        Vary the verbs and the kinds of task (open questions, writing, classification, rewriting, \
        reasoning, coding, advice); each instruction must be self-contained, answerable in text \
        alone, between one and three sentences, and different from the examples. {focus}
        Reply with one JSON object and nothing else: {"instructions": ["<instruction 1>", …]}

        Examples of instructions:
        {examples}
        """

    /// Words that make an instruction unanswerable in text (self-instruct's list, shortened).
    static let unsuitableWords = ["image", "images", "graph", "graphs", "picture", "pictures", "file", "files", "map", "maps", "draw",
                                  "plot", "go to", "video", "audio", "music", "flowchart", "diagram"]

    /// The tasks kept, in order, with the tally of what was not.
    public func run(seeds: [String], book: LLMCallBook, purpose: String = "synthesize", report: (String) -> Void = { _ in })
        throws -> (tasks: [SynthesizedTask], tally: SynthesisTally) {
        var pool = seeds
        var poolTokens = seeds.map(RougeL.tokens)
        var kept: [SynthesizedTask] = []
        var tally = SynthesisTally()
        var random = SplitMix64(seed: seed)
        let cells = taxonomy?.cells ?? []
        var cellIndex = 0
        var round = 0
        while kept.count < count && round < maxRounds {
            round += 1
            // 1. Prompts: examples drawn from the seeds and (from the second round) the generated pool.
            var prompts: [(examples: [String], topic: String?, taskType: String?)] = []
            for _ in 0..<promptsPerRound {
                var examples: [String] = []
                var drawn: Set<Int> = []
                let generated = pool.count - seeds.count
                // Mostly seeds, up to a quarter generated ones (self-instruct shows 6 human and 2 machine tasks).
                let fromGenerated = min(generated, examplesPerPrompt / 4)
                while examples.count < min(examplesPerPrompt - fromGenerated, seeds.count) {
                    let index = random.below(seeds.count)
                    if drawn.insert(index).inserted { examples.append(pool[index]) }
                }
                while examples.count < min(examplesPerPrompt, seeds.count + fromGenerated) {
                    let index = seeds.count + random.below(generated)
                    if drawn.insert(index).inserted { examples.append(pool[index]) }
                }
                let cell = cells.isEmpty ? nil : cells[cellIndex % cells.count]
                cellIndex += 1
                prompts.append((examples, cell?.topic, cell?.taskType))
            }
            let calls = prompts.map { item -> LLMCall in
                let focus = item.topic.map { "This time, every instruction must be about \($0) and be a \(item.taskType ?? "task") task." } ?? ""
                let examples = item.examples.enumerated().map { "\($0.offset + 1). \($0.element)" }.joined(separator: "\n")
                let text = JudgePrompt(system: "", user: prompt).messages([("count", String(perPrompt)), ("examples", examples), ("focus", focus)])[1].content
                return generator.call([ChatMessage(role: "user", content: text)], temperature: temperature, maxTokens: maxTokens, format: .jsonObject)
            }
            let replies = try book.answers(calls, purpose: purpose, step: "new instructions")
            // 2. The novelty filter, in prompt and reply order.
            var candidates: [SynthesizedTask] = []
            for (item, record) in zip(prompts, replies) {
                guard record.status == .answered, let reply = record.reply,
                      let list = JudgeReplyParser.jsonFields(in: reply)?.first(where: { $0.0.lowercased() == "instructions" })?.1.arrayValue else {
                    tally.unreadable += 1
                    continue
                }
                for value in list {
                    guard let text = value.stringValue?.trimmingCharacters(in: .whitespacesAndNewlines) else { continue }
                    tally.proposed += 1
                    let words = text.split(whereSeparator: \.isWhitespace).count
                    if words < 3 || words > 150 { tally.badLength += 1; continue }
                    let lower = " " + text.lowercased() + " "
                    if Self.unsuitableWords.contains(where: { lower.range(of: "\\b\($0)\\b", options: .regularExpression) != nil }) || text.first?.isPunctuation == true {
                        tally.unsuitable += 1
                        continue
                    }
                    let tokens = RougeL.tokens(text)
                    let closest = poolTokens.map { RougeL(target: $0, prediction: tokens).f }.max() ?? 0
                    if closest >= maxSimilarity { tally.tooSimilar += 1; continue }
                    pool.append(text)
                    poolTokens.append(tokens)
                    candidates.append(SynthesizedTask(instruction: text, answer: "", round: round, examples: item.examples, topic: item.topic,
                                                      taskType: item.taskType, closest: closest))
                    if kept.count + candidates.count >= count { break }
                }
                if kept.count + candidates.count >= count { break }
            }
            // 3. Answers.
            let answers = try book.answers(candidates.map {
                generator.call([ChatMessage(role: "system", content: answerSystem), ChatMessage(role: "user", content: $0.instruction)],
                               temperature: 0.7, maxTokens: maxTokens, format: .text)
            }, purpose: purpose, step: "answers")
            for (candidate, record) in zip(candidates, answers) {
                guard record.status == .answered, let answer = record.reply?.trimmingCharacters(in: .whitespacesAndNewlines), !answer.isEmpty else {
                    tally.unanswered += 1
                    continue
                }
                var task = candidate
                task.answer = answer
                kept.append(task)
            }
            tally.accepted = kept.count
            report("[synthesize] round \(round): \(kept.count)/\(count) tasks kept (\(tally.tooSimilar) too similar, \(tally.unsuitable + tally.badLength) unsuitable so far)")
        }
        return (kept, tally)
    }
}
