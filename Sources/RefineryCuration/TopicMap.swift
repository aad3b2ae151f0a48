import Foundation
import RefineryCore
import RefineryTensor

/// A 2-D map of a dataset: each sample's embedding projected on the first two principal
/// components, samples grouped into topics by k-means on the embeddings, and each topic labelled
/// by its top terms under class-based TF-IDF (c-TF-IDF, as BERTopic labels topics).
public struct TopicMap: Sendable {
    /// Each sample's position.
    public var points: [(x: Float, y: Float)]
    /// Each sample's topic.
    public var topics: [Int]
    /// Each topic's top terms, best first.
    public var labels: [[String]]
    /// Share of the variance the two axes hold.
    public var explained: (Double, Double)

    /// The widest vectors mapped (the principal components need a width × width covariance).
    public static let maximumWidth = 4096

    /// The map of `vectors` (one per sample, all of one width) with the samples' `texts` for labels.
    public static func build(vectors: [[Float]], texts: [String], topics requested: Int? = nil, seed: UInt64 = 1, terms: Int = 5) throws -> TopicMap {
        let n = vectors.count
        guard n > 0 else { return TopicMap(points: [], topics: [], labels: [], explained: (0, 0)) }
        let width = vectors[0].count
        guard width > 0, width <= maximumWidth, vectors.allSatisfy({ $0.count == width }) else {
            throw CoreError("the topic map needs vectors of one width between 1 and \(maximumWidth); found widths \(Set(vectors.map(\.count)).sorted().prefix(5))")
        }
        let points = SemanticDeduplicator.normalized(vectors, width: width)
        let k = max(1, min(n, requested ?? max(2, min(12, Int((Double(n) / 25).squareRoot().rounded(.up))))))
        let clustering = SemanticDeduplicator(settings: SemanticDedupSettings(clusters: k, seed: seed))
        let topics = clustering.kMeans(points, count: n, width: width)
        let (projected, explained) = principalPlane(points, count: n, width: width)
        return TopicMap(points: projected, topics: topics, labels: labels(texts: texts, topics: topics, count: k, terms: terms),
                        explained: explained)
    }

    /// Projection on the top two principal components (power iteration with deflation on the
    /// covariance), and each component's share of the total variance.
    static func principalPlane(_ points: Tensor, count n: Int, width d: Int) -> ([(x: Float, y: Float)], (Double, Double)) {
        let centered = Tensor(uninitialized: [n, d])
        var mean = [Float](repeating: 0, count: d)
        for row in 0..<n { for c in 0..<d { mean[c] += points.pointer[row * d + c] } }
        for c in 0..<d { mean[c] /= Float(n) }
        for row in 0..<n { for c in 0..<d { centered.pointer[row * d + c] = points.pointer[row * d + c] - mean[c] } }
        let covariance = Tensor(uninitialized: [d, d])
        BLAS.gemm(transA: true, transB: false, m: d, n: d, k: n, alpha: 1 / Float(max(1, n - 1)), a: centered.pointer, lda: d,
                  b: centered.pointer, ldb: d, c: covariance.pointer, ldc: d)
        var total = 0.0
        for c in 0..<d { total += Double(covariance.pointer[c * d + c]) }
        var components: [[Float]] = []
        var values: [Double] = []
        for index in 0..<2 {
            var v = (0..<d).map { Float((($0 * 7919 + index * 104_729) % 1000)) / 1000 + 0.001 }
            var eigenvalue = 0.0
            for _ in 0..<200 {
                var w = [Float](repeating: 0, count: d)
                for r in 0..<d {
                    var sum: Float = 0
                    for c in 0..<d { sum += covariance.pointer[r * d + c] * v[c] }
                    w[r] = sum
                }
                for previous in components {
                    let projection = zip(w, previous).reduce(Float(0)) { $0 + $1.0 * $1.1 }
                    for c in 0..<d { w[c] -= projection * previous[c] }
                }
                let norm = w.reduce(Float(0)) { $0 + $1 * $1 }.squareRoot()
                guard norm > 0 else { break }
                eigenvalue = Double(norm)
                v = w.map { $0 / norm }
            }
            components.append(v)
            values.append(eigenvalue)
        }
        let projected = (0..<n).map { row -> (x: Float, y: Float) in
            var x: Float = 0, y: Float = 0
            for c in 0..<d {
                x += centered.pointer[row * d + c] * components[0][c]
                y += centered.pointer[row * d + c] * components[1][c]
            }
            return (x, y)
        }
        return (projected, total > 0 ? (values[0] / total, values[1] / total) : (0, 0))
    }

    /// c-TF-IDF: a term's frequency in a topic (over the topic's words) × log(1 + average words per
    /// topic ÷ the term's frequency over all topics); stop words and numbers left out.
    static func labels(texts: [String], topics: [Int], count k: Int, terms: Int) -> [[String]] {
        var perTopic = [[String: Int]](repeating: [:], count: k)
        var wordsPerTopic = [Int](repeating: 0, count: k)
        var overall: [String: Int] = [:]
        for (text, topic) in zip(texts, topics) {
            for word in TextWords.of(text) where !TextWords.isStopWord(word) && word.count > 2 {
                perTopic[topic][word, default: 0] += 1
                wordsPerTopic[topic] += 1
                overall[word, default: 0] += 1
            }
        }
        let average = Double(wordsPerTopic.reduce(0, +)) / Double(max(1, k))
        return (0..<k).map { topic in
            let size = Double(max(1, wordsPerTopic[topic]))
            return perTopic[topic].map { word, count -> (String, Double) in
                (word, Double(count) / size * log(1 + average / Double(overall[word] ?? 1)))
            }
            .sorted { $0.1 != $1.1 ? $0.1 > $1.1 : $0.0 < $1.0 }.prefix(terms).map(\.0)
        }
    }

    /// Vectors for texts without embeddings: hashed bag-of-words TF-IDF in `width` dimensions,
    /// normalised (the map then shows lexical, not semantic, neighbourhoods).
    public static func hashedTFIDF(_ texts: [String], width: Int = 256) -> [[Float]] {
        let documents = texts.map { TextWords.of($0).filter { !TextWords.isStopWord($0) } }
        var frequency: [String: Int] = [:]
        for words in documents { for word in Set(words) { frequency[word, default: 0] += 1 } }
        let n = Double(max(1, texts.count))
        return documents.map { words in
            var vector = [Float](repeating: 0, count: width)
            for word in words {
                let idf = log((1 + n) / Double(1 + (frequency[word] ?? 0))) + 1
                vector[Int(StableHash.value(word) % UInt64(width))] += Float(idf)
            }
            return vector
        }
    }
}
