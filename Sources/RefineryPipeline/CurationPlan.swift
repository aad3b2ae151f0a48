import Foundation
import RefineryCore
import RefineryCuration
import RefineryData
import RefineryStore
import RefineryText

/// What a curation stage decided about one sample.
public struct StageDecision: Sendable, Equatable {
    public var kept: Bool
    /// Why it was dropped (or a note when kept).
    public var reason: String?
    /// The stage's measure (e.g. the estimated similarity with the sample kept in its place).
    public var score: Double?
    /// The index of the sample kept in its place, if any.
    public var matched: Int?
    /// What lies behind the decision, as JSON text (an LLM stage's scores, rationales, verdicts, models, cost).
    public var detail: String?
    /// The rows that stand for the sample in the stage's output (rewritten or expanded); nil: the
    /// sample's own row when kept.
    public var outputRows: [String]?

    public init(kept: Bool, reason: String? = nil, score: Double? = nil, matched: Int? = nil, detail: String? = nil, outputRows: [String]? = nil) {
        self.kept = kept
        self.reason = reason
        self.score = score
        self.matched = matched
        self.detail = detail
        self.outputRows = outputRows
    }
}

/// What a stage may use besides its input: the run's state, the LLM call book (stages that ask
/// an LLM), and where progress goes.
public struct CurationContext {
    public var store: RunStore?
    public var calls: LLMCallBook?
    public var report: ProgressReport

    public init(store: RunStore?, calls: LLMCallBook? = nil, report: @escaping ProgressReport = { _ in }) {
        self.store = store
        self.calls = calls
        self.report = report
    }

    /// The call book, or a clear error for a stage that needs one.
    func requireCalls(for stage: String) throws -> LLMCallBook {
        guard let calls else {
            throw PipelineError("the \(stage) stage asks an LLM and keeps every call in the state file: give --state (or data.state)")
        }
        return calls
    }
}

/// One curation stage: decides about every sample of its input. Stages run in the order the
/// config lists them, each on what the one before kept.
public protocol CurationStage: Sendable {
    /// The stage's name in the config (`dedup`, …).
    var name: String { get }
    /// Every setting that changes the stage's decisions, canonically written: stored with them, so
    /// a rerun with other settings recomputes the stage and one with the same settings reuses them.
    /// Stages that read files (eval sets, datasets to mix in) include their contents' digests, so
    /// reading may fail; it happens when the stage runs, never when a config is loaded.
    var settingsText: String { get throws }
    /// One decision per line, in order. `store` is the run's state, when there is one (a stage may
    /// keep work there between runs, as MinHash keeps signatures).
    func decide(_ lines: [DatasetLine], store: RunStore?) throws -> [StageDecision]
    /// One decision per line with everything the context offers; stages that need more than the
    /// store (an LLM) implement this one.
    func decide(_ lines: [DatasetLine], context: CurationContext) throws -> [StageDecision]
    /// Rows the stage adds after the ones it kept (mixing in another dataset); none by default.
    func additions(to kept: [DatasetLine]) throws -> [DatasetLine]
    /// Called with the decisions, computed or reused, before they are applied (a stage that writes
    /// a side output, such as preference pairs, writes it here); nothing by default.
    func finish(_ lines: [DatasetLine], decisions: [StageDecision], report: ProgressReport) throws
}

extension CurationStage {
    public func additions(to kept: [DatasetLine]) throws -> [DatasetLine] { [] }

    public func decide(_ lines: [DatasetLine], context: CurationContext) throws -> [StageDecision] { try decide(lines, store: context.store) }

    public func finish(_ lines: [DatasetLine], decisions: [StageDecision], report: ProgressReport) throws {}

    /// One decision per line, with nothing kept between runs.
    public func decide(_ lines: [DatasetLine]) throws -> [StageDecision] { try decide(lines, store: nil) }
}

/// The `curate` section: an ordered list of stages run on the generated train split.
///
/// ```yaml
/// curate:
///   - filter: {min_answer_chars: 40, language: en}
///   - decontaminate: {eval: [evals/benchmark.jsonl]}
///   - dedup: exact
///   - dedup: {method: minhash, threshold: 0.8}
/// ```
/// A single mapping (`curate: {dedup: minhash, threshold: 0.8}`) is one dedup stage, as
/// earlier configs wrote it. A new stage is one more entry in `builders`.
public struct CurationPlan: Sendable {
    public var stages: [any CurationStage] = []

    public init(stages: [any CurationStage] = []) { self.stages = stages }

    /// Stage names and how each is built from its settings.
    static let builders: [String: @Sendable (ConfigSection) throws -> any CurationStage] = [
        "dedup": { try DedupStage($0) },
        "filter": { try FilterStage($0) },
        "decontaminate": { try DecontaminationStage($0) },
        "mix": { try MixStage($0) },
        "score": { try ScoreStage($0) },
        "judge": { try JudgeStage($0) },
        "evolve": { try EvolveStage($0) },
        "feedback": { try FeedbackStage($0) },
        "synthesize": { try SynthesizeStage($0) },
    ]

    init(path: String, raw: Any?) throws {
        guard let raw else { return }
        if let list = raw as? [Any] {
            for (index, item) in list.enumerated() {
                guard let entry = item as? [String: Any], entry.count == 1, let (name, settings) = entry.first else {
                    throw PipelineError("\(path): curate[\(index)] must be one stage, e.g. `- dedup: exact` (stages: \(Self.builders.keys.sorted().joined(separator: ", ")))")
                }
                stages.append(try Self.stage(name, settings: settings, path: path, label: "curate[\(index)].\(name)"))
            }
        } else if let mapping = raw as? [String: Any] {
            guard mapping["dedup"] != nil else {
                throw PipelineError("\(path): curate must be a list of stages, e.g. `- dedup: exact` (stages: \(Self.builders.keys.sorted().joined(separator: ", ")))")
            }
            var settings = mapping
            settings["method"] = mapping["dedup"]
            settings["dedup"] = nil
            stages.append(try Self.stage("dedup", settings: settings, path: path, label: "curate"))
        } else {
            throw PipelineError("\(path): curate must be a list of stages, e.g. `- dedup: exact`")
        }
    }

    private static func stage(_ name: String, settings: Any, path: String, label: String) throws -> any CurationStage {
        guard let build = builders[name] else {
            throw PipelineError("\(path): unknown curation stage \(label) (stages: \(builders.keys.sorted().joined(separator: ", ")))")
        }
        // A scalar is the stage's `method`: `- dedup: exact`.
        let mapping: [String: Any] = (settings as? [String: Any]) ?? ["method": settings]
        return try build(ConfigSection(path: path, name: label, raw: mapping))
    }

    /// Runs every stage on the dataset at `path` and rewrites it (atomically) with the lines kept.
    /// With a `store`, each stage's decisions are stored per sample under `pipeline`; a stage whose
    /// settings and input are those stored is not recomputed.
    public func run(on path: String, store: RunStore? = nil, calls: LLMCallBook? = nil, pipeline: String = "curate", report: @escaping ProgressReport) throws {
        guard !stages.isEmpty else { return }
        var lines = try DatasetLines.read(path)
        let context = CurationContext(store: store, calls: calls, report: report)
        for (position, stage) in stages.enumerated() {
            lines = try Self.run(stage, position: position, on: lines, context: context, pipeline: pipeline)
        }
        try DatasetLines.write(lines.map(\.row), to: path)
        report("[curate] kept \(lines.count) samples in \(path)\n")
    }

    /// Runs one stage (or reuses its stored decisions) and returns the lines it keeps, then those it adds.
    public static func run(_ stage: any CurationStage, position: Int, on lines: [DatasetLine], context: CurationContext,
                           pipeline: String) throws -> [DatasetLine] {
        let decisions = try decisions(of: stage, position: position, on: lines, context: context, pipeline: pipeline)
        var kept: [DatasetLine] = []
        let reader = DatasetReader()
        for (line, decision) in zip(lines, decisions) where decision.kept {
            guard let rows = decision.outputRows else {
                kept.append(line)
                continue
            }
            for row in rows {
                kept.append(DatasetLine(row: row, sample: try reader.parse(line: row, lineNumber: line.lineNumber, source: "\(stage.name) output"),
                                        lineNumber: line.lineNumber))
            }
        }
        let added = try stage.additions(to: kept)
        if !added.isEmpty { context.report("[curate] \(stage.name): added \(added.count) samples\n") }
        return kept + added
    }

    /// `run` without LLM stages' call book.
    public static func run(_ stage: any CurationStage, position: Int, on lines: [DatasetLine], store: RunStore?, pipeline: String,
                           report: @escaping ProgressReport) throws -> [DatasetLine] {
        try run(stage, position: position, on: lines, context: CurationContext(store: store, report: report), pipeline: pipeline)
    }

    /// One decision per line from `stage`: computed and stored, or read back from the store when
    /// the stage ran before with the same settings on the same input.
    public static func decisions(of stage: any CurationStage, position: Int, on lines: [DatasetLine], store: RunStore?, pipeline: String,
                                 report: @escaping ProgressReport) throws -> [StageDecision] {
        try decisions(of: stage, position: position, on: lines, context: CurationContext(store: store, report: report), pipeline: pipeline)
    }

    /// One decision per line from `stage`, with the context's store and call book.
    public static func decisions(of stage: any CurationStage, position: Int, on lines: [DatasetLine], context: CurationContext,
                                 pipeline: String) throws -> [StageDecision] {
        let store = context.store, report = context.report
        let ids = SampleIDs.of(lines)
        let digest = ContentDigest.sha256(ids.joined(separator: "\n"))
        let settings = try stage.settingsText
        if let store, let stored = try store.curationStage(pipeline: pipeline, position: position),
           stored.name == stage.name, stored.settings == settings, stored.inputDigest == digest {
            let records = Dictionary(try store.curationDecisions(pipeline: pipeline, position: position).map { ($0.sample, $0) }) { a, _ in a }
            let index = Dictionary(ids.enumerated().map { ($1, $0) }) { a, _ in a }
            let reused = ids.compactMap { id in
                records[id].map { record in
                    StageDecision(kept: record.kept, reason: record.reason, score: record.score, matched: record.matched.flatMap { index[$0] },
                                  detail: record.detail, outputRows: record.outputRows.flatMap(Self.rows(fromJSON:)))
                }
            }
            if reused.count == lines.count && reused.filter(\.kept).count == stored.kept {
                report("[curate] \(stage.name): unchanged since the last run, \(stored.kept) of \(lines.count) kept (decisions from the state)\n")
                try stage.finish(lines, decisions: reused, report: report)
                return reused
            }
        }
        let decisions = try stage.decide(lines, context: context)
        guard decisions.count == lines.count else {
            throw PipelineError("curation stage \(stage.name) decided about \(decisions.count) of \(lines.count) samples")
        }
        let keptCount = decisions.filter(\.kept).count
        if let store {
            let records = zip(ids, decisions).map { id, d in
                CurationDecisionRecord(sample: id, kept: d.kept, reason: d.reason, score: d.score,
                                       cluster: d.matched.map { ids[$0] } ?? id, matched: d.matched.map { ids[$0] }, detail: d.detail,
                                       outputRows: d.outputRows.map { JSONValue.array($0.map { .string($0) }).compactText })
            }
            try store.recordCurationStage(CurationStageRecord(pipeline: pipeline, position: position, name: stage.name,
                                                              settings: settings, inputDigest: digest,
                                                              kept: keptCount, dropped: lines.count - keptCount),
                                          decisions: records)
        }
        let rows = decisions.filter(\.kept).map { $0.outputRows?.count ?? 1 }.reduce(0, +)
        report("[curate] \(stage.name): kept \(keptCount) of \(lines.count) samples\(rows == keptCount ? "" : " → \(rows) rows") (\(settings))\n")
        try stage.finish(lines, decisions: decisions, report: report)
        return decisions
    }
}

extension CurationPlan {
    /// Output rows as stored (a JSON array of row texts); nil when the text is not one.
    static func rows(fromJSON text: String) -> [String]? {
        guard let items = (try? JSONValue.parse(text))?.arrayValue else { return nil }
        let rows = items.compactMap(\.stringValue)
        return rows.count == items.count ? rows : nil
    }
}

/// The ids curation stores decisions under: each line's lineage id, or its text's key; a repeated
/// id gets `#2`, `#3`, … in order, so every line has its own.
public enum SampleIDs {
    public static func of(_ lines: [DatasetLine]) -> [String] {
        var seen: [String: Int] = [:]
        return lines.map { line in
            let base = (try? JSONValue.parse(line.row))?["lineage"]?["id"]?.stringValue ?? SampleKey.of(line.sample)
            let count = (seen[base] ?? 0) + 1
            seen[base] = count
            return count == 1 ? base : "\(base)#\(count)"
        }
    }
}
