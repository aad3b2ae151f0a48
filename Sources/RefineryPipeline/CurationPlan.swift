import Foundation
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

/// Exact or MinHash deduplication, keeping the first of each cluster.
public struct DedupStage: CurationStage {
    public enum Method: String, Sendable { case exact, minhash }
    public static let keys = ["method", "threshold", "num_perm", "ngram"]
    public let name = "dedup"
    public var method: Method = .exact
    public var threshold = 0.8
    public var permutations = 128
    public var ngram = 5

    public init(method: Method = .exact, threshold: Double = 0.8, permutations: Int = 128, ngram: Int = 5) {
        self.method = method
        self.threshold = threshold
        self.permutations = permutations
        self.ngram = ngram
    }

    init(_ s: ConfigSection) throws {
        let name = try s.string("method") ?? "exact"
        guard let method = Method(rawValue: name) else { throw PipelineError("\(s.path): \(s.name) must be exact or minhash, found \(name)") }
        self.method = method
        threshold = try s.double("threshold") ?? threshold
        permutations = try s.int("num_perm") ?? permutations
        ngram = try s.int("ngram") ?? ngram
        guard (0...1).contains(threshold), permutations > 0, ngram > 0 else {
            throw PipelineError("\(s.path): \(s.name): threshold must be in [0, 1]; num_perm and ngram positive")
        }
        try s.finish(known: Self.keys)
    }

    public func apply(_ lines: [DatasetLine]) throws -> (kept: [DatasetLine], summary: String) {
        let samples = lines.map(\.sample)
        let kept: [Int]
        switch method {
        case .exact: kept = Deduplication.exact(samples)
        case .minhash: kept = Deduplication.minHash(samples, threshold: threshold, permutations: permutations, ngram: ngram)
        }
        return (kept.map { lines[$0] }, "\(method.rawValue) dedup kept \(kept.count) of \(lines.count) samples")
    }
}
