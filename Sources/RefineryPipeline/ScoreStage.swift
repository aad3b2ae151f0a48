import Foundation
import RefineryCore
import RefineryCuration
import RefineryData
import RefineryModel
import RefineryStore

/// A local reward model or classifier as a curation stage: every sample's score is stored with its
/// decision (`data why` shows it), and samples below `min` or outside the best `top_fraction` are dropped.
///
/// ```yaml
/// - score: {model: models/reward-model, min: 0.5}                      # first output ≥ 0.5
/// - score: {model: models/fineweb-edu-classifier, output: int_score, top_fraction: 0.8, field: output}
/// ```
public struct ScoreStage: CurationStage {
    public static let keys = ["model", "dtype", "field", "output", "min", "top_fraction"]
    public let name = "score"
    public var model: String
    public var dtype: String
    public var field: String?
    /// The output compared (a label name); nil: the first.
    public var output: String?
    public var minimum: Double?
    public var topFraction: Double?

    init(_ s: ConfigSection) throws {
        guard let model = try s.string("model") else {
            throw PipelineError("\(s.path): \(s.name) needs model: a *ForSequenceClassification folder (a reward model or classifier)")
        }
        self.model = model
        dtype = try s.string("dtype") ?? "auto"
        _ = try ScorerPrecision(parsing: dtype, source: "\(s.path): \(s.name).dtype")
        field = try s.string("field")
        output = try s.string("output")
        minimum = try s.double("min")
        topFraction = try s.double("top_fraction")
        if let minimum, !minimum.isFinite { throw PipelineError("\(s.path): \(s.name).min must be a finite number") }
        if let topFraction, !(topFraction > 0 && topFraction <= 1) {
            throw PipelineError("\(s.path): \(s.name).top_fraction must be in (0, 1], found \(topFraction)")
        }
        try s.finish(known: Self.keys)
    }

    public var settingsText: String {
        ["model=\(model)", "dtype=\(dtype)", "field=\(field ?? "-")", "output=\(output ?? "first")",
         "min=\(minimum.map { "\($0)" } ?? "-")", "top_fraction=\(topFraction.map { "\($0)" } ?? "-")"].joined(separator: " ")
    }

    public func decide(_ lines: [DatasetLine], store: RunStore?) throws -> [StageDecision] {
        try decide(lines, context: CurationContext(store: store))
    }

    public func decide(_ lines: [DatasetLine], context: CurationContext) throws -> [StageDecision] {
        guard !lines.isEmpty else { return [] }
        let scorer = try SampleScorer(directory: URL(fileURLWithPath: model), precision: try ScorerPrecision(parsing: dtype, source: "dtype"),
                                      field: field)
        let column: Int
        if let output {
            guard let index = scorer.labels.firstIndex(of: output) else {
                throw PipelineError("score stage: the model has no output \"\(output)\" (outputs: \(scorer.labels.joined(separator: ", ")))")
            }
            column = index
        } else {
            column = 0
        }
        let scores = try scorer.scores(lines, source: "score input", warn: { context.report("[score] warning: \($0)\n") }).map { Double($0[column]) }
        var cutoff = -Double.infinity
        if let topFraction {
            let keep = max(1, Int((Double(scores.count) * topFraction).rounded(.up)))
            cutoff = scores.sorted(by: >)[min(keep, scores.count) - 1]
        }
        return scores.map { score in
            if let minimum, score < minimum {
                return StageDecision(kept: false, reason: String(format: "score %.4f below the minimum %.4f", score, minimum), score: score)
            }
            if score < cutoff {
                return StageDecision(kept: false, reason: String(format: "score %.4f outside the top %.0f%% (cutoff %.4f)", score,
                                                                 (topFraction ?? 1) * 100, cutoff), score: score)
            }
            return StageDecision(kept: true, score: score)
        }
    }
}
