import Foundation
import RefineryCore
import RefineryData
import RefineryText
import Testing
@testable import RefineryCuration

/// Statistics, histograms, the topic map and the report page's escaping.
@Suite struct ExplorationTests {
    static func parts(_ instruction: String, _ answer: String) -> SampleParts {
        SampleParts(.chat([ChatMessage(role: "user", content: instruction), ChatMessage(role: "assistant", content: answer)]))
    }

    @Test func statisticsCountLengthsDiversityAndTopTerms() {
        let samples = [Self.parts("What is a cat?", "A cat is a small cat."), Self.parts("Dogs?", "Dogs bark loudly.")]
        let stats = DatasetStatistics.of(samples)
        #expect(stats.unit == "words")
        #expect(stats.instructionLengths == [4, 1] && stats.answerLengths == [6, 3])
        // Answer words: a cat is a small cat | dogs bark loudly → 9 words, 7 distinct; 7 bigrams, 7 distinct.
        #expect(abs(stats.distinct1 - 7.0 / 9.0) < 1e-12)
        #expect(stats.distinct2 == 1)
        #expect(stats.topWords.first?.term == "cat" && stats.topWords.first?.count == 2)
        #expect(!stats.topWords.contains { $0.term == "a" || $0.term == "is" }, "stop words are left out")
        let tokens = DatasetStatistics.of(samples, countTokens: { $0.count })
        #expect(tokens.unit == "tokens" && tokens.answerLengths == [21, 17])
    }

    @Test func histogramBinsAreRoundAndCoverEveryValue() {
        let histogram = Histogram([0, 3, 7, 49, 50, 120], maxBins: 10)
        #expect(histogram.bins.first?.lower == 0)
        #expect(histogram.bins.allSatisfy { $0.upper - $0.lower == 20 })
        #expect(histogram.bins.map(\.count).reduce(0, +) == 6)
        #expect(histogram.bins.map(\.count) == [3, 0, 2, 0, 0, 0, 1])
        #expect(Histogram([]).bins.isEmpty)
        #expect(Histogram.quantile([5, 1, 3], 0.5) == 3 && Histogram.quantile([], 0.9) == 0)
    }

    @Test func topicMapSeparatesTopicsAndLabelsThem() throws {
        var texts: [String] = [], vectors: [[Float]] = []
        for i in 0..<30 {
            let topic = i % 3
            texts.append(["bread flour yeast oven baking", "planets orbit stars telescope", "gradient loss optimizer learning"][topic] + " sample \(i)")
            var v = [Float](repeating: 0, count: 8)
            v[topic] = 1
            v[3 + topic] = Float(i % 5) * 0.05
            vectors.append(v)
        }
        let map = try TopicMap.build(vectors: vectors, texts: texts, topics: 3)
        #expect(map.points.count == 30 && map.labels.count == 3)
        for topic in 0..<3 {
            let members = (0..<30).filter { map.topics[$0] == map.topics[topic] }
            #expect(members.allSatisfy { $0 % 3 == topic }, "topic of sample \(topic) holds only its kind")
        }
        let labelOfBread = map.labels[map.topics[0]]
        #expect(labelOfBread.contains("bread") || labelOfBread.contains("flour") || labelOfBread.contains("yeast"), "\(labelOfBread)")
        #expect(map.explained.0 + map.explained.1 > 0.9, "three clusters in 8 dimensions lie near a plane: \(map.explained)")
        // No embeddings: the hashed TF-IDF fallback still separates the word sets.
        let fallback = try TopicMap.build(vectors: TopicMap.hashedTFIDF(texts), texts: texts, topics: 3)
        #expect(Set(fallback.topics).count == 3)
    }

    @Test func pageEscapesTextAndScriptData() {
        let stats = DatasetStatistics.of([Self.parts("<b>hi</b>", "</script><script>alert(1)</script>")])
        let map = TopicMap(points: [(0, 0)], topics: [0], labels: [["x"]], explained: (1, 0))
        let page = ReportPage.html(ReportContent(
            title: "T & <T>", samples: [ReportSample(id: "1", instruction: "<b>hi</b>", answer: "</script><script>alert(1)</script>", topic: 0,
                                                     status: "kept", reason: nil)],
            statistics: stats, map: map, mapSource: "test", stages: [], duplicateGroups: []))
        #expect(page.contains("<title>T &amp; &lt;T&gt;</title>"))
        #expect(!page.contains("<script>alert(1)"), "sample text never closes the data block")
        #expect(page.components(separatedBy: "</script>").count - 1 == 2, "only the data block and the page script close")
    }
}
