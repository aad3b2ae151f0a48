import Foundation
import RefineryCore
import RefineryCuration
import RefineryData
import RefineryStore

/// Semantic dedup as a stage: embed each sample (through the run's embedding cache), cluster,
/// group pairs at or above the cosine threshold, keep one per group.
///
/// ```yaml
/// - dedup: {method: semantic, model: models/all-MiniLM-L6-v2, threshold: 0.9, clusters: 50, keep: longest}
/// - dedup: {method: semantic, base_url: https://api.openai.com/v1, embedding_model: text-embedding-3-small,
///           api_key_env: OPENAI_API_KEY, field: instruction}
/// ```
public struct SemanticDedupPlan: Sendable, Equatable {
    public var source: EmbeddingSource
    public var settings: SemanticDedupSettings
    public var text: EmbeddedText

    public init(source: EmbeddingSource, settings: SemanticDedupSettings = SemanticDedupSettings(), text: EmbeddedText = .instructionAndAnswer) {
        self.source = source
        self.settings = settings
        self.text = text
    }

    init(_ s: ConfigSection) throws {
        source = try EmbeddingSource(s)
        settings = SemanticDedupSettings(threshold: try s.double("threshold") ?? 0.9, clusters: try s.int("clusters"),
                                         seed: try s.seed("seed") ?? 1)
        if let problem = settings.problem { throw PipelineError("\(s.path): \(s.name): \(problem)") }
        text = try s.string("field").map(EmbeddedText.field) ?? .instructionAndAnswer
    }

    var settingsText: String {
        "\(source.settingsText) threshold=\(settings.threshold) clusters=\(settings.clusters.map(String.init) ?? "auto") "
            + "seed=\(settings.seed) text=\(text.settingsText)"
    }

    func decide(_ lines: [DatasetLine], rule: KeepRule, lengths: [Int], scores: [Double?], store: RunStore?) throws -> [StageDecision] {
        guard !lines.isEmpty else { return [] }
        let texts = try text.texts(of: lines, source: "dedup input")
        let embedder = try source.makeEmbedder(onRetry: { FileHandle.standardError.write(Data("[dedup] \($0)\n".utf8)) })
        let vectors = try CachedEmbeddings.vectors(of: texts, embedder: embedder, store: store,
                                                   report: { FileHandle.standardError.write(Data($0.utf8)) })
        let outcome = try SemanticDeduplicator(settings: settings).run(vectors, rule: rule, lengths: lengths, scores: scores)
        return outcome.kept.enumerated().map { index, member in
            member == index
                ? StageDecision(kept: true)
                : StageDecision(kept: false, reason: String(format: "semantic duplicate (cosine %.3f ≥ %.2f, cluster %d)",
                                                            outcome.similarity[index], settings.threshold, outcome.cluster[index]),
                                score: outcome.similarity[index], matched: member)
        }
    }
}
