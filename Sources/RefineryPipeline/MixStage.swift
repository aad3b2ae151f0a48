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
    public let sources: [DatasetMixer.Source]
    public let seed: UInt64
    public let settingsText: String

    init(_ s: ConfigSection) throws {
        guard let list = try s.mappings("sources"), !list.isEmpty else {
            throw PipelineError("\(s.path): \(s.name) needs sources: a list of {path, count} or {path, ratio}")
        }
        var sources: [DatasetMixer.Source] = [], text: [String] = []
        for (index, entry) in list.enumerated() {
            let label = "\(s.name).sources[\(index)]"
            guard let path = entry["path"] as? String else {
                throw PipelineError("\(s.path): \(label) must be {path: FILE, count: N} or {path: FILE, ratio: R}")
            }
            let unknown = Set(entry.keys).subtracting(["path", "count", "ratio"])
            guard unknown.isEmpty else { throw PipelineError("\(s.path): \(label): unknown keys \(unknown.sorted().joined(separator: ", ")) (use path, count or ratio)") }
            let amount: DatasetMixer.Amount
            let count = entry["count"], ratio = entry["ratio"]
            if count == nil && ratio == nil {
                amount = .all
            } else if ratio == nil, let n = count as? Int, n >= 0 {
                amount = .count(n)
            } else if count == nil, let r = (ratio as? Double) ?? (ratio as? Int).map(Double.init), r >= 0, r.isFinite {
                amount = .ratio(r)
            } else {
                throw PipelineError("\(s.path): \(label): give one of count (an integer ≥ 0) or ratio (a number ≥ 0)")
            }
            let rows = try DatasetLines.read(path).map(\.row)
            sources.append(DatasetMixer.Source(name: URL(fileURLWithPath: path).lastPathComponent, rows: rows, amount: amount))
            text.append("\(path):\(amount):\(ContentDigest.sha256(rows.joined(separator: "\n")).prefix(16))")
        }
        seed = try s.seed("seed") ?? 42
        try s.finish(known: Self.keys)
        self.sources = sources
        settingsText = "sources=\(text.joined(separator: ",")) seed=\(seed)"
    }

    public func decide(_ lines: [DatasetLine], store: RunStore?) throws -> [StageDecision] {
        lines.map { _ in StageDecision(kept: true) }
    }

    public func additions(to kept: [DatasetLine]) throws -> [DatasetLine] {
        var generator = SplitMix64(seed: seed)
        let reader = DatasetReader()
        var added: [DatasetLine] = []
        for source in sources {
            for row in try DatasetMixer.pick(source, base: kept.count, generator: &generator) {
                added.append(DatasetLine(row: row, sample: try reader.parse(line: row, lineNumber: added.count + 1, source: source.name)))
            }
        }
        return added
    }
}
