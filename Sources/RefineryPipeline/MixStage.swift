import Foundation
import RefineryCore
import RefineryCuration
import RefineryData
import RefineryStore
import RefineryText

/// Mixing as a curation stage: keeps every sample and adds rows of other datasets in stated
/// amounts, each with `lineage.source`, deterministically by seed.
///
/// ```yaml
/// - mix:
///     sources:
///       - {path: data/general-instructions.jsonl, ratio: 0.5}   # half as many rows as the dataset has
///       - {path: data/house-style.jsonl, count: 200}
///     seed: 42
/// ```
public struct MixStage: CurationStage {
    public static let keys = ["sources", "seed"]
    public let name = "mix"
    /// Each source file and how much of it to add.
    public let sources: [(path: String, amount: DatasetMixer.Amount)]
    public let seed: UInt64

    init(_ s: ConfigSection) throws {
        guard let list = try s.mappings("sources"), !list.isEmpty else {
            throw PipelineError("\(s.path): \(s.name) needs sources: a list of {path, count} or {path, ratio}")
        }
        var sources: [(path: String, amount: DatasetMixer.Amount)] = []
        for (index, entry) in list.enumerated() {
            let label = "\(s.name).sources[\(index)]"
            guard let path = entry["path"] as? String else {
                throw PipelineError("\(s.path): \(label) must be {path: FILE, count: N} or {path: FILE, ratio: R}")
            }
            let unknown = Set(entry.keys).subtracting(["path", "count", "ratio"])
            guard unknown.isEmpty else { throw PipelineError("\(s.path): \(label): unknown keys \(unknown.sorted().joined(separator: ", ")) (use path, count or ratio)") }
            let count = entry["count"], ratio = entry["ratio"]
            if count == nil && ratio == nil {
                sources.append((path, .all))
            } else if ratio == nil, let n = count as? Int, n >= 0, n <= DatasetMixer.maximumRows {
                sources.append((path, .count(n)))
            } else if count == nil, let r = (ratio as? Double) ?? (ratio as? Int).map(Double.init), r >= 0, r.isFinite {
                sources.append((path, .ratio(r)))
            } else {
                throw PipelineError("\(s.path): \(label): give one of count (an integer in 0...\(DatasetMixer.maximumRows)) or ratio (a number ≥ 0)")
            }
        }
        seed = try s.seed("seed") ?? 42
        try s.finish(known: Self.keys)
        self.sources = sources
    }

    /// The sources' contents are part of the settings: a changed file changes what is added.
    public var settingsText: String {
        get throws {
            let parts = try sources.map { source in
                do { return "\(source.path):\(source.amount):\(ContentDigest.sha256(bytes: try Data(contentsOf: URL(fileURLWithPath: source.path))).prefix(16))" } catch {
                    throw PipelineError("cannot read the mix source \(source.path): \(error.localizedDescription)")
                }
            }
            return "sources=\(parts.joined(separator: ",")) seed=\(seed)"
        }
    }

    public func decide(_ lines: [DatasetLine], store: RunStore?) throws -> [StageDecision] {
        lines.map { _ in StageDecision(kept: true) }
    }

    /// Rows of the sources, read now, in the stated amounts, each with `lineage.source`.
    public func additions(to kept: [DatasetLine]) throws -> [DatasetLine] {
        var generator = SplitMix64(seed: seed)
        let reader = DatasetReader()
        var added: [DatasetLine] = []
        for source in sources {
            let lines = try DatasetLines.read(source.path)
            let mix = DatasetMixer.Source(name: URL(fileURLWithPath: source.path).lastPathComponent, rows: lines.map(\.row), amount: source.amount)
            let picked = try DatasetMixer.pick(mix, base: kept.count, generator: &generator)
            for row in picked { added.append(DatasetLine(row: row, sample: try reader.parse(line: row, lineNumber: added.count + 1, source: source.path))) }
        }
        return added
    }
}
