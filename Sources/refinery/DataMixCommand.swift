import ArgumentParser
import Foundation
import RefineryCore
import RefineryCuration
import RefineryData

/// `refinery data mix`: mix datasets in stated amounts.
struct DataMixCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mix", abstract: "Mix datasets in stated amounts (e.g. your generated set with a general instruction set), deterministically by seed.",
        discussion: """
        Each --source is FILE, FILE:COUNT (exactly COUNT rows) or FILE:xRATIO (RATIO times the first \
        source's size). The first source is the base (all of it unless an amount is given). A source \
        asked for more rows than it has is repeated, then sampled. Every row gets lineage.source; \
        the mix is shuffled by --seed.
        """)

    @Option(help: "A dataset and its amount: FILE, FILE:COUNT or FILE:xRATIO (repeatable; the first is the base).") var source: [String] = []
    @Option(help: "Output JSONL.") var output: String
    @Option(help: "Seed of the sampling and the shuffle.") var seed: UInt64 = 42

    func run() throws {
        try reportingErrors {
            guard !source.isEmpty else { throw CommandError("give at least one --source FILE[:COUNT|:xRATIO]") }
            var sources: [DatasetMixer.Source] = []
            for spec in source {
                let (path, amount) = try Self.parse(spec)
                let rows = try DatasetLines.read(path).map(\.row)
                sources.append(DatasetMixer.Source(name: URL(fileURLWithPath: path).lastPathComponent, rows: rows, amount: amount))
            }
            let (rows, counts) = try DatasetMixer(seed: seed).mix(sources)
            try DatasetLines.write(rows, to: output)
            Output.line("mixed \(rows.count) rows → \(output)")
            for (name, count) in counts {
                Output.line(String(format: "  %@: %d rows (%.1f%%)", name, count, 100 * Double(count) / Double(max(rows.count, 1))))
            }
        }
    }

    /// `FILE`, `FILE:COUNT` or `FILE:xRATIO`.
    static func parse(_ spec: String) throws -> (String, DatasetMixer.Amount) {
        guard let colon = spec.lastIndex(of: ":"), !FileManager.default.fileExists(atPath: spec) else { return (spec, .all) }
        let path = String(spec[..<colon]), amount = spec[spec.index(after: colon)...]
        if amount.hasPrefix("x"), let ratio = Double(amount.dropFirst()), ratio >= 0, ratio.isFinite { return (path, .ratio(ratio)) }
        if let count = Int(amount), count >= 0 { return (path, .count(count)) }
        throw CommandError("--source \(spec): the amount after “:” must be a count (e.g. :1000) or a ratio (e.g. :x0.5)")
    }
}
