import RefineryCore
import RefineryTensor

/// Settings of semantic deduplication.
public struct SemanticDedupSettings: Sendable, Equatable {
    /// Cosine similarity at or above which two samples are duplicates.
    public var threshold: Double = 0.9
    /// Number of k-means clusters; nil: one per ~100 samples (at least 1).
    public var clusters: Int?
    /// Lloyd iterations at most (stops earlier when no assignment changes).
    public var iterations: Int = 25
    public var seed: UInt64 = 1

    public init(threshold: Double = 0.9, clusters: Int? = nil, iterations: Int = 25, seed: UInt64 = 1) {
        self.threshold = threshold
        self.clusters = clusters
        self.iterations = iterations
        self.seed = seed
    }

    /// What is wrong with these settings, if anything.
    public var problem: String? {
        if !(threshold > 0 && threshold <= 1) { return "threshold must be in (0, 1], found \(threshold)" }
        if let clusters, clusters < 1 || clusters > 10_000_000 { return "clusters must be between 1 and 10,000,000, found \(clusters)" }
        if iterations < 1 || iterations > 1000 { return "iterations must be between 1 and 1000, found \(iterations)" }
        return nil
    }

    /// The cluster count used for `count` samples.
    public func clusterCount(for count: Int) -> Int {
        max(1, min(count, clusters ?? Int((Double(count) / 100).rounded(.up))))
    }
}

/// SemDeDup: spherical k-means on the (normalised) embeddings, then within each cluster every pair
/// at or above the cosine threshold joins one group (union-find); one sample per group is kept by
/// the keep rule. Pairs are only compared inside a cluster — the method's trade of recall for
/// near-linear work; deterministic for a seed.
public struct SemanticDeduplicator: Sendable {
    public var settings: SemanticDedupSettings

    public init(settings: SemanticDedupSettings = SemanticDedupSettings()) { self.settings = settings }

    /// The outcome for each sample.
    public struct Outcome: Sendable, Equatable {
        /// The sample kept in its place (itself when kept).
        public var kept: [Int]
        /// Cosine similarity with the kept member of its group (1 for kept samples).
        public var similarity: [Double]
        /// The k-means cluster of each sample.
        public var cluster: [Int]
    }

    /// Decides about `vectors` (one per sample, all of one width).
    public func run(_ vectors: [[Float]], rule: KeepRule = .first, lengths: [Int] = [], scores: [Double?] = []) throws -> Outcome {
        let n = vectors.count
        guard n > 0 else { return Outcome(kept: [], similarity: [], cluster: []) }
        let width = vectors[0].count
        guard width > 0, vectors.allSatisfy({ $0.count == width }) else {
            throw CoreError("semantic dedup needs vectors of one width; found widths \(Set(vectors.map(\.count)).sorted())")
        }
        let points = Self.normalized(vectors, width: width)
        let assignment = kMeans(points, count: n, width: width)
        var groups = DuplicateClusters(count: n)
        var members: [Int: [Int]] = [:]
        for (index, c) in assignment.enumerated() { members[c, default: []].append(index) }
        let threshold = Float(settings.threshold)
        for (_, list) in members.sorted(by: { $0.key < $1.key }) where list.count > 1 {
            let m = list.count
            let block = Tensor(uninitialized: [m, width])
            for (row, index) in list.enumerated() { (block.pointer + row * width).update(from: points.pointer + index * width, count: width) }
            // Similarities a block of rows at a time, so one big cluster never needs an m × m matrix.
            let blockRows = max(1, min(m, (1 << 24) / m))
            let similarity = Tensor(uninitialized: [blockRows, m])
            for first in stride(from: 0, to: m, by: blockRows) {
                let rows = min(blockRows, m - first)
                BLAS.gemm(transA: false, transB: true, m: rows, n: m, k: width, a: block.pointer + first * width, lda: width,
                          b: block.pointer, ldb: width, c: similarity.pointer, ldc: m)
                for r in 0..<rows {
                    let i = first + r
                    for j in (i + 1)..<m where similarity.pointer[r * m + j] >= threshold { groups.join(list[i], list[j]) }
                }
            }
        }
        let kept = groups.keptMember(rule: rule, lengths: lengths, scores: scores)
        let similarity = (0..<n).map { index -> Double in
            let other = kept[index]
            if other == index { return 1 }
            return Double(dotOfRows(points.pointer, index, other, width))
        }
        return Outcome(kept: kept, similarity: similarity, cluster: assignment)
    }

    /// Rows scaled to unit length (zero rows stay zero), packed `[n, width]`.
    static func normalized(_ vectors: [[Float]], width: Int) -> Tensor {
        let points = Tensor(uninitialized: [vectors.count, width])
        for (row, vector) in vectors.enumerated() {
            let norm = vector.reduce(Float(0)) { $0 + $1 * $1 }.squareRoot()
            let scale: Float = norm > 0 ? 1 / norm : 0
            for c in 0..<width { points.pointer[row * width + c] = vector[c] * scale }
        }
        return points
    }

    /// Spherical k-means (seeded random initial centroids, Lloyd iterations by dot product);
    /// the cluster of each point.
    func kMeans(_ points: Tensor, count n: Int, width: Int) -> [Int] {
        let k = settings.clusterCount(for: n)
        if k == 1 { return [Int](repeating: 0, count: n) }
        var random = SplitMix64(seed: settings.seed)
        // Seeds: k distinct points drawn by a seeded shuffle (the GEMM-driven Lloyd steps then do
        // the work; k-means++ seeding would cost n·k dot products on one thread).
        var order = Array(0..<n)
        for i in 0..<k {
            order.swapAt(i, i + random.below(n - i))
        }
        let centroids = Tensor(uninitialized: [k, width])
        for c in 0..<k { (centroids.pointer + c * width).update(from: points.pointer + order[c] * width, count: width) }
        var assignment = [Int](repeating: -1, count: n)
        let scores = Tensor(uninitialized: [n, k])
        for _ in 0..<settings.iterations {
            BLAS.gemm(transA: false, transB: true, m: n, n: k, k: width, a: points.pointer, lda: width, b: centroids.pointer, ldb: width,
                      c: scores.pointer, ldc: k)
            var changed = false
            for index in 0..<n {
                let row = scores.pointer + index * k
                var best = 0
                for c in 1..<k where row[c] > row[best] { best = c }
                if assignment[index] != best { assignment[index] = best; changed = true }
            }
            if !changed { break }
            centroids.pointer.update(repeating: 0, count: k * width)
            var sizes = [Int](repeating: 0, count: k)
            for index in 0..<n {
                let c = assignment[index]
                sizes[c] += 1
                let target = centroids.pointer + c * width, source = points.pointer + index * width
                for d in 0..<width { target[d] += source[d] }
            }
            for c in 0..<k {
                let target = centroids.pointer + c * width
                if sizes[c] == 0 {
                    // An empty cluster restarts at a random point.
                    target.update(from: points.pointer + random.below(n) * width, count: width)
                    continue
                }
                var norm: Float = 0
                for d in 0..<width { norm += target[d] * target[d] }
                let scale: Float = norm > 0 ? 1 / norm.squareRoot() : 0
                for d in 0..<width { target[d] *= scale }
            }
        }
        return assignment
    }
}

/// Dot product of rows `a` and `b` of one packed matrix.
private func dotOfRows(_ base: UnsafeMutablePointer<Float>, _ a: Int, _ b: Int, _ width: Int) -> Float {
    var sum: Float = 0
    for d in 0..<width { sum += base[a * width + d] * base[b * width + d] }
    return sum
}
