import Foundation
import RefineryCore
import RefineryCuration
import RefineryData
import RefineryStore

/// Exact or MinHash deduplication, keeping one sample of each group of duplicates by a stated rule.
///
/// ```yaml
/// - dedup: exact                       # SHA-256 of the text, case and whitespace normalised
/// - dedup: {method: exact, ignore_punctuation: true, keep: score, score_field: rating}
/// - dedup: {method: minhash, threshold: 0.8, num_perm: 128, ngram: 5, shingle: words, keep: longest}
/// - dedup: {method: minhash, bands: 14, rows: 8, verify: false}   # datatrove's layout, no check
/// - dedup: {method: semantic, model: models/all-MiniLM-L6-v2, threshold: 0.9}   # SemDeDup on embeddings
/// ```
public struct DedupStage: CurationStage {
    public enum Method: String, Sendable { case exact, minhash, semantic }
    public static let keys = ["method", "threshold", "num_perm", "ngram", "shingle", "bands", "rows", "verify", "seed",
                              "keep", "score_field", "ignore_case", "ignore_punctuation", "clusters", "field"] + EmbeddingSource.keys
    public let name = "dedup"
    public var method: Method
    public var minHash: MinHashSettings
    public var exactNormalization: TextNormalization
    public var keep: KeepRule
    /// The numeric field of a row that `keep: score` compares (top level, e.g. `score` or `rating`).
    public var scoreField: String
    /// Semantic dedup's embeddings, settings and embedded text (method `semantic` only).
    public var semantic: SemanticDedupPlan?

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
            throw PipelineError("\(s.path): \(s.name) must be exact, minhash or semantic, found \(name)")
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
        settings.seed = try s.seed("seed") ?? 1
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
        if method == .semantic { semantic = try SemanticDedupPlan(s) }
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
        if let semantic, method == .semantic { parts.append(semantic.settingsText) }
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
        case .semantic:
            guard let semantic else { throw PipelineError("semantic dedup without its settings") }
            return try semantic.decide(lines, rule: keep, lengths: texts.map(\.count), scores: scores, store: store)
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
