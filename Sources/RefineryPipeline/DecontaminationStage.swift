import Foundation
import RefineryCuration
import RefineryData
import RefineryStore

/// Decontamination as a curation stage: training samples that contain an eval sample are dropped.
///
/// ```yaml
/// - decontaminate:
///     eval: [evals/mmlu-sample.jsonl, evals/my-benchmark.jsonl]   # any supported format
///     ngram: 13          # shared word n-gram length (8–13 as the field uses)
///     minhash: true      # also near copies (MinHash, threshold below)
///     threshold: 0.8
/// ```
public struct DecontaminationStage: CurationStage {
    public static let keys = ["eval", "ngram", "minhash", "threshold"]
    public let name = "decontaminate"
    public let evalFiles: [String]
    public let decontaminator: Decontaminator

    init(_ s: ConfigSection) throws {
        guard let files = try s.strings("eval"), !files.isEmpty else {
            throw PipelineError("\(s.path): \(s.name) needs eval: the eval set files to protect (any supported format)")
        }
        let ngram = try s.int("ngram") ?? 13
        guard (3...50).contains(ngram) else { throw PipelineError("\(s.path): \(s.name).ngram must be in 3...50, found \(ngram)") }
        var minHash: MinHashSettings? = MinHashSettings(threshold: try s.double("threshold") ?? 0.8)
        if try s.bool("minhash") == false { minHash = nil }
        if let problem = minHash?.problem { throw PipelineError("\(s.path): \(s.name): \(problem)") }
        try s.finish(known: Self.keys)
        evalFiles = files
        decontaminator = Decontaminator(ngram: ngram, minHash: minHash)
    }

    /// The eval sets' contents are part of the settings: a changed eval set recomputes the stage.
    public var settingsText: String {
        get throws {
            let digests = try evalFiles.map { file in
                do { return ContentDigest.sha256(bytes: try Data(contentsOf: URL(fileURLWithPath: file))) } catch {
                    throw PipelineError("cannot read the eval set \(file): \(error.localizedDescription)")
                }
            }
            return "eval=\(zip(evalFiles, digests).map { "\($0):\($1.prefix(16))" }.joined(separator: ",")) ngram=\(decontaminator.ngram) "
                + (decontaminator.minHash.map { "minhash threshold=\($0.threshold)" } ?? "no-minhash")
        }
    }

    /// The stage from command-line settings (the config's keys and values; `source` names them in errors).
    public static func fromSettings(_ settings: [String: Any], source: String) throws -> DecontaminationStage {
        try DecontaminationStage(ConfigSection(path: source, name: "decontaminate", raw: settings))
    }

    /// The eval samples: each whole, and its question alone (a training sample that asks the eval
    /// question with another answer is contaminated too).
    public func evalSamples() throws -> [Decontaminator.EvalSample] {
        var eval: [Decontaminator.EvalSample] = []
        for file in evalFiles {
            let lines = try DatasetLines.read(file)
            guard !lines.isEmpty else { throw PipelineError("decontaminate: the eval set \(file) has no samples: nothing to protect (wrong file?)") }
            for line in lines {
                let source = "\(file):\(line.lineNumber)"
                eval.append(Decontaminator.EvalSample(source: source, text: ComparedText.of(line.sample)))
                let question = SampleParts(line.sample).instruction
                if !question.isEmpty && question != ComparedText.of(line.sample) {
                    eval.append(Decontaminator.EvalSample(source: source, text: question))
                }
            }
        }
        return eval
    }

    public func decide(_ lines: [DatasetLine], store: RunStore?) throws -> [StageDecision] {
        let eval = try evalSamples()
        return decontaminator.matches(train: lines.map { ComparedText.of($0.sample) }, eval: eval).map { match in
            guard let match else { return StageDecision(kept: true) }
            let source = eval[match.eval].source
            switch match.kind {
            case .exact: return StageDecision(kept: false, reason: "exact copy of eval sample \(source)", score: 1)
            case .ngram: return StageDecision(kept: false, reason: "shares “\(match.ngram ?? "")” with eval sample \(source)")
            case .minhash:
                return StageDecision(kept: false, reason: String(format: "near copy (estimated Jaccard similarity %.2f) of eval sample %@",
                                                                 match.similarity ?? 0, source), score: match.similarity)
            }
        }
    }
}
