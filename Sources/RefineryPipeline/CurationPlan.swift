import Foundation
import RefineryCore
import RefineryCuration
import RefineryData

/// One curation stage: takes the dataset's lines, returns those it keeps and a line for the
/// progress display. Stages run in the order the config lists them.
public protocol CurationStage: Sendable {
    /// The stage's name in the config (`dedup`, …).
    var name: String { get }
    func apply(_ lines: [DatasetLine]) throws -> (kept: [DatasetLine], summary: String)
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
    public func run(on path: String, report: ProgressReport) throws {
        guard !stages.isEmpty else { return }
        var lines = try DatasetLines.read(path)
        for stage in stages {
            let (kept, summary) = try stage.apply(lines)
            report("[curate] \(stage.name): \(summary)\n")
            lines = kept
        }
        try DatasetLines.write(lines.map(\.row), to: path)
        report("[curate] kept \(lines.count) samples in \(path)\n")
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

    /// For each line, the line kept for its group (itself when kept).
    public func keptMembers(_ lines: [DatasetLine]) -> [Int] {
        let texts = lines.map { ComparedText.of($0.sample) }
        let scores: [Double?] = keep == .highestScore ? lines.map { (try? JSONValue.parse($0.row))?[scoreField]?.doubleValue } : []
        switch method {
        case .exact: return ExactDeduplicator(normalization: exactNormalization).keptMembers(texts, rule: keep, scores: scores)
        case .minhash: return MinHashDeduplicator(settings: minHash).keptMembers(texts, rule: keep, scores: scores)
        }
    }

    public func apply(_ lines: [DatasetLine]) throws -> (kept: [DatasetLine], summary: String) {
        let members = keptMembers(lines)
        let kept = lines.indices.filter { members[$0] == $0 }.map { lines[$0] }
        let detail = method == .minhash ? " (\(minHash.bands)\(minHash.verify ? ", verified" : ""))" : ""
        return (kept, "\(method.rawValue) dedup\(detail) kept \(kept.count) of \(lines.count) samples")
    }
}
