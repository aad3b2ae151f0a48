import Foundation
import RefineryCore
import RefineryCuration
import RefineryData
import RefineryStore

/// Gathers what `refinery data report` shows: statistics of the samples, their topic map, and —
/// with a run's state — what every curation stage decided, joined to the samples by their ids.
public enum ExplorationReport {
    /// The report's content for `lines`. `vectors` are the samples' embeddings (nil: hashed TF-IDF
    /// of their words); `countTokens` counts lengths in tokens (nil: words).
    public static func build(lines: [DatasetLine], title: String, store: RunStore?, vectors: [[Float]]?, mapSource: String,
                             countTokens: ((String) -> Int)?, topics: Int?) throws -> ReportContent {
        let ids = SampleIDs.of(lines)
        let parts = lines.map { SampleParts($0.sample) }
        let texts = parts.map { $0.instruction.isEmpty ? $0.answer : $0.instruction + "\n\n" + $0.answer }
        let mapVectors = vectors ?? TopicMap.hashedTFIDF(texts)
        let map = try TopicMap.build(vectors: mapVectors, texts: texts, topics: topics)
        var status = [String: (String, String?)]()
        var stages: [ReportStage] = []
        var groups: [ReportDuplicateGroup] = []
        var scores: [ReportScores] = []
        let textByID = Dictionary(zip(ids, texts).map { ($0, $1) }) { a, _ in a }
        for stage in try store?.curationStages() ?? [] {
            let label = "\(stage.pipeline) #\(stage.position + 1) \(stage.name)"
            let decisions = try store?.curationDecisions(pipeline: stage.pipeline, position: stage.position) ?? []
            var reasons: [String: Int] = [:]
            var members: [String: [(id: String, text: String?, score: Double?)]] = [:]
            for decision in decisions where !decision.kept {
                let reason = decision.reason ?? "dropped"
                reasons[ReportPage.reasonKind(reason), default: 0] += 1
                if status[decision.sample] == nil { status[decision.sample] = ("dropped by \(label)", reason) }
                if let matched = decision.matched {
                    members[matched, default: []].append((decision.sample, textByID[decision.sample], decision.score))
                }
            }
            for (kept, dropped) in members.sorted(by: { $0.value.count != $1.value.count ? $0.value.count > $1.value.count : $0.key < $1.key }) {
                groups.append(ReportDuplicateGroup(stage: label, kept: (kept, textByID[kept]), dropped: dropped))
            }
            if let section = Self.scores(of: decisions, label: label) { scores.append(section) }
            stages.append(ReportStage(label: label, kept: stage.kept, dropped: stage.dropped,
                                      reasons: reasons.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }.map { ($0.key, $0.value) }))
        }
        let samples = lines.indices.map { index in
            ReportSample(id: ids[index], instruction: parts[index].instruction, answer: parts[index].answer, topic: map.topics[index],
                         status: status[ids[index]]?.0 ?? "kept", reason: status[ids[index]]?.1)
        }
        return ReportContent(title: title, samples: samples, statistics: DatasetStatistics.of(parts, countTokens: countTokens),
                             map: map, mapSource: vectors == nil ? "Hashed TF-IDF of the words (no embeddings given)" : mapSource,
                             stages: stages, duplicateGroups: groups, scores: scores)
    }

    /// What a scoring stage (judge, score) recorded: its scores, verdicts and failures, and for a
    /// jury the agreement between its judges; nil for stages that score nothing.
    static func scores(of decisions: [CurationDecisionRecord], label: String) -> ReportScores? {
        let details = decisions.compactMap { $0.detail.flatMap { try? JSONValue.parse($0) } }
        let judged = details.filter { $0["judges"] != nil }
        if judged.isEmpty {
            let values = decisions.compactMap(\.score)
            guard label.hasSuffix(" score"), !values.isEmpty else { return nil }
            return ReportScores(stage: label, scores: values, failures: 0, agreement: [], verdicts: [])
        }
        let names = judged.first?["judges"]?.arrayValue?.compactMap { $0["judge"]?.stringValue } ?? []
        let labels: [[String?]] = names.indices.map { j in
            judged.map { detail in
                guard let opinion = detail["judges"]?.arrayValue?.dropFirst(j).first else { return nil }
                return opinion["score"]?.doubleValue.map { String(Int($0)) } ?? opinion["verdict"]?.stringValue
            }
        }
        let jury = judged.map { $0["score"]?.doubleValue.map { String(Int($0.rounded())) } ?? $0["verdict"]?.stringValue }
        let verdicts = Dictionary(judged.compactMap { $0["verdict"]?.stringValue }.map { ($0, 1) }, uniquingKeysWith: +)
        return ReportScores(stage: label, scores: judged.compactMap { ($0["normalized_score"] ?? $0["score"])?.doubleValue },
                            failures: judged.filter { $0["failure"] != nil }.count,
                            agreement: JuryAgreement(judges: names, labels: labels, jury: jury, human: nil).lines,
                            verdicts: verdicts.sorted { $0.key < $1.key }.map { ($0.key, $0.value) })
    }

    /// The `embedding` field of every line, when all lines have one of one width; else nil.
    public static func embeddingFields(_ lines: [DatasetLine]) -> [[Float]]? {
        var vectors: [[Float]] = []
        for line in lines {
            guard let values = (try? JSONValue.parse(line.row))?["embedding"]?.arrayValue else { return nil }
            let vector = values.compactMap { $0.doubleValue.map(Float.init) }
            guard vector.count == values.count, !vector.isEmpty, vector.count <= TopicMap.maximumWidth,
                  vector.count == (vectors.first?.count ?? vector.count) else { return nil }
            vectors.append(vector)
        }
        return vectors.isEmpty ? nil : vectors
    }
}
