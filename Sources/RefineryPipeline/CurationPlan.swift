import Foundation
import RefineryCore
import RefineryCuration
import RefineryData
import RefineryStore

/// What a curation stage decided about one sample.
public struct StageDecision: Sendable, Equatable {
    public var kept: Bool
    /// Why it was dropped (or a note when kept).
    public var reason: String?
    /// The stage's measure (e.g. the estimated similarity with the sample kept in its place).
    public var score: Double?
    /// The index of the sample kept in its place, if any.
    public var matched: Int?

    public init(kept: Bool, reason: String? = nil, score: Double? = nil, matched: Int? = nil) {
        self.kept = kept
        self.reason = reason
        self.score = score
        self.matched = matched
    }
}

/// One curation stage: decides about every sample of its input. Stages run in the order the
/// config lists them, each on what the one before kept.
public protocol CurationStage: Sendable {
    /// The stage's name in the config (`dedup`, …).
    var name: String { get }
    /// Every setting that changes the stage's decisions, canonically written: stored with them, so
    /// a rerun with other settings recomputes the stage and one with the same settings reuses them.
    var settingsText: String { get }
    /// One decision per line, in order. `store` is the run's state, when there is one (a stage may
    /// keep work there between runs, as MinHash keeps signatures).
    func decide(_ lines: [DatasetLine], store: RunStore?) throws -> [StageDecision]
}

extension CurationStage {
    /// One decision per line, with nothing kept between runs.
    public func decide(_ lines: [DatasetLine]) throws -> [StageDecision] { try decide(lines, store: nil) }

    /// The lines kept, and a line for the progress display.
    public func apply(_ lines: [DatasetLine]) throws -> (kept: [DatasetLine], summary: String) {
        let decisions = try decide(lines)
        let kept = zip(lines, decisions).filter { $0.1.kept }.map(\.0)
        return (kept, "\(name) kept \(kept.count) of \(lines.count) samples")
    }
}

/// The `curate` section: an ordered list of stages run on the generated train split.
///
/// ```yaml
/// curate:
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
    public func run(on path: String, store: RunStore? = nil, pipeline: String = "curate", report: ProgressReport) throws {
        guard !stages.isEmpty else { return }
        var lines = try DatasetLines.read(path)
        for (position, stage) in stages.enumerated() {
            lines = try Self.run(stage, position: position, on: lines, store: store, pipeline: pipeline, report: report)
        }
        try DatasetLines.write(lines.map(\.row), to: path)
        report("[curate] kept \(lines.count) samples in \(path)\n")
    }

    /// Runs one stage (or reuses its stored decisions) and returns the lines it keeps.
    public static func run(_ stage: any CurationStage, position: Int, on lines: [DatasetLine], store: RunStore?, pipeline: String,
                           report: ProgressReport) throws -> [DatasetLine] {
        let decisions = try decisions(of: stage, position: position, on: lines, store: store, pipeline: pipeline, report: report)
        return zip(lines, decisions).filter { $0.1.kept }.map(\.0)
    }

    /// One decision per line from `stage`: computed and stored, or read back from the store when
    /// the stage ran before with the same settings on the same input.
    public static func decisions(of stage: any CurationStage, position: Int, on lines: [DatasetLine], store: RunStore?, pipeline: String,
                                 report: ProgressReport) throws -> [StageDecision] {
        let ids = SampleIDs.of(lines)
        let digest = ContentDigest.sha256(ids.joined(separator: "\n"))
        if let store, let stored = try store.curationStage(pipeline: pipeline, position: position),
           stored.name == stage.name, stored.settings == stage.settingsText, stored.inputDigest == digest {
            let records = Dictionary(try store.curationDecisions(pipeline: pipeline, position: position).map { ($0.sample, $0) }) { a, _ in a }
            let index = Dictionary(ids.enumerated().map { ($1, $0) }) { a, _ in a }
            let reused = ids.compactMap { id in
                records[id].map { StageDecision(kept: $0.kept, reason: $0.reason, score: $0.score, matched: $0.matched.flatMap { index[$0] }) }
            }
            if reused.count == lines.count && reused.filter(\.kept).count == stored.kept {
                report("[curate] \(stage.name): unchanged since the last run, \(stored.kept) of \(lines.count) kept (decisions from the state)\n")
                return reused
            }
        }
        let decisions = try stage.decide(lines, store: store)
        guard decisions.count == lines.count else {
            throw PipelineError("curation stage \(stage.name) decided about \(decisions.count) of \(lines.count) samples")
        }
        let keptCount = decisions.filter(\.kept).count
        if let store {
            let records = zip(ids, decisions).map { id, d in
                CurationDecisionRecord(sample: id, kept: d.kept, reason: d.reason, score: d.score,
                                       cluster: d.matched.map { ids[$0] } ?? id, matched: d.matched.map { ids[$0] })
            }
            try store.recordCurationStage(CurationStageRecord(pipeline: pipeline, position: position, name: stage.name,
                                                              settings: stage.settingsText, inputDigest: digest,
                                                              kept: keptCount, dropped: lines.count - keptCount),
                                          decisions: records)
        }
        report("[curate] \(stage.name): kept \(keptCount) of \(lines.count) samples (\(stage.settingsText))\n")
        return decisions
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

/// Exact or MinHash deduplication, keeping one sample of each group of duplicates by a stated rule.
///
/// ```yaml
/// - dedup: exact                       # SHA-256 of the text, case and whitespace normalised
/// - dedup: {method: exact, ignore_punctuation: true, keep: score, score_field: rating}
/// - dedup: {method: minhash, threshold: 0.8, num_perm: 128, ngram: 5, shingle: words, keep: longest}
/// - dedup: {method: minhash, bands: 14, rows: 8, verify: false}   # datatrove's layout, no check
/// ```
public struct DedupStage: CurationStage {
    public enum Method: String, Sendable { case exact, minhash }
    public static let keys = ["method", "threshold", "num_perm", "ngram", "shingle", "bands", "rows", "verify", "seed",
                              "keep", "score_field", "ignore_case", "ignore_punctuation"]
    public let name = "dedup"
    public var method: Method
    public var minHash: MinHashSettings
    public var exactNormalization: TextNormalization
    public var keep: KeepRule
    /// The numeric field of a row that `keep: score` compares (top level, e.g. `score` or `rating`).
    public var scoreField: String

    public init(method: Method = .exact, minHash: MinHashSettings = MinHashSettings(),
                exactNormalization: TextNormalization = .exact, keep: KeepRule = .first, scoreField: String = "score") {
        self.method = method
        self.minHash = minHash
        self.exactNormalization = exactNormalization
        self.keep = keep
        self.scoreField = scoreField
    }

    init(_ s: ConfigSection) throws {
        let name = try s.string("method") ?? "exact"
        guard let method = Method(rawValue: name) else {
            throw PipelineError("\(s.path): \(s.name) must be exact or minhash, found \(name)")
        }
        var settings = MinHashSettings(threshold: try s.double("threshold") ?? 0.8, permutations: try s.int("num_perm") ?? 128)
        let ngram = try s.int("ngram") ?? 5
        switch try s.string("shingle") ?? "words" {
        case "words": settings.shingling = .words(ngram)
        case "chars", "characters": settings.shingling = .characters(ngram)
        case let other: throw PipelineError("\(s.path): \(s.name).shingle must be words or chars, found \(other)")
        }
        switch (try s.int("bands"), try s.int("rows")) {
        case let (bands?, rows?): settings.explicitBands = LSHBands(bands: bands, rows: rows)
        case (nil, nil): break
        default: throw PipelineError("\(s.path): \(s.name): give both bands and rows, or neither (then they follow the threshold)")
        }
        settings.verify = try s.bool("verify") ?? settings.verify
        settings.seed = UInt64(try s.int("seed") ?? 1)
        // Whitespace is always collapsed; case is ignored unless told otherwise; punctuation is
        // ignored by MinHash (a separator) and compared by exact dedup unless told otherwise.
        settings.normalization.lowercase = try s.bool("ignore_case") ?? true
        settings.normalization.stripPunctuation = try s.bool("ignore_punctuation") ?? (method == .minhash)
        if let problem = settings.problem { throw PipelineError("\(s.path): \(s.name): \(problem)") }
        let keepName = try s.string("keep") ?? "first"
        guard let keep = KeepRule(name: keepName) else {
            throw PipelineError("\(s.path): \(s.name).keep must be first, longest or score, found \(keepName)")
        }
        self.init(method: method, minHash: settings, exactNormalization: settings.normalization, keep: keep,
                  scoreField: try s.string("score_field") ?? "score")
        try s.finish(known: Self.keys)
    }

    /// The stage from command-line settings (the config's keys and values; `source` names them in errors).
    public static func fromSettings(_ settings: [String: Any], source: String) throws -> DedupStage {
        try DedupStage(ConfigSection(path: source, name: "dedup", raw: settings))
    }

    public var settingsText: String {
        let normalization = method == .exact ? exactNormalization : minHash.normalization
        var parts = ["method=\(method.rawValue)", "ignore_case=\(normalization.lowercase)", "ignore_punctuation=\(normalization.stripPunctuation)",
                     "keep=\(keep)"]
        if keep == .highestScore { parts.append("score_field=\(scoreField)") }
        if method == .minhash {
            let shingle = if case .characters = minHash.shingling { "chars" } else { "words" }
            parts += ["threshold=\(minHash.threshold)", "num_perm=\(minHash.permutations)", "shingle=\(shingle)", "ngram=\(minHash.shingling.size)",
                      "bands=\(minHash.bands.bands)", "rows=\(minHash.bands.rows)", "verify=\(minHash.verify)", "seed=\(minHash.seed)"]
        }
        return parts.joined(separator: " ")
    }

    public func decide(_ lines: [DatasetLine], store: RunStore?) throws -> [StageDecision] {
        let texts = lines.map { ComparedText.of($0.sample) }
        let scores: [Double?] = keep == .highestScore ? lines.map { (try? JSONValue.parse($0.row))?[scoreField]?.doubleValue } : []
        switch method {
        case .exact:
            return ExactDeduplicator(normalization: exactNormalization).keptMembers(texts, rule: keep, scores: scores).enumerated().map { index, member in
                member == index ? StageDecision(kept: true) : StageDecision(kept: false, reason: "exact copy", score: 1, matched: member)
            }
        case .minhash:
            let deduplicator = MinHashDeduplicator(settings: minHash)
            let signatures = try store.map { try Self.signatures(texts, deduplicator: deduplicator, store: $0) }
            return deduplicator.decide(texts, rule: keep, scores: scores, signatures: signatures).enumerated().map { index, decision in
                decision.kept == index
                    ? StageDecision(kept: true)
                    : StageDecision(kept: false, reason: String(format: "near copy (estimated Jaccard similarity %.2f ≥ %.2f)", decision.similarity, minHash.threshold),
                                    score: decision.similarity, matched: decision.kept)
            }
        }
    }

    /// The texts' signatures: those stored under the same signature settings, the rest computed
    /// (only theirs) and stored — a rerun over a grown dataset hashes only the new samples.
    static func signatures(_ texts: [String], deduplicator: MinHashDeduplicator, store: RunStore) throws -> [UInt32] {
        let perms = deduplicator.settings.permutations, key = deduplicator.signatureSettings
        let digests = texts.map(ContentDigest.sha256)
        let stored = try store.minHashSignatures(settings: key, digests: digests)
        let missing = texts.indices.filter { stored[digests[$0]]?.count != perms }
        let computed = deduplicator.signatures(missing.map { texts[$0] })
        var fresh: [(digest: String, values: [UInt32])] = []
        var byDigest = stored
        for (n, index) in missing.enumerated() {
            let values = Array(computed[(n * perms)..<((n + 1) * perms)])
            byDigest[digests[index]] = values
            fresh.append((digests[index], values))
        }
        try store.storeMinHashSignatures(settings: key, fresh)
        return digests.flatMap { byDigest[$0] ?? [] }
    }
}
