import Foundation
import RefineryCore
import RefineryLLM
import RefineryText

/// Removes duplicate samples, keeping the first of each cluster. Samples are compared by their
/// instruction + answer text (all turns of a conversation, or the raw text).
public enum Deduplication {
    /// The text a sample is compared by, normalised: lower case, single spaces.
    public static func key(_ sample: Sample) -> String {
        let raw: String
        switch sample {
        case let .text(text): raw = text
        case let .chat(messages): raw = messages.filter { $0.role != "system" }.map(\.content).joined(separator: "\n")
        }
        return raw.lowercased().split(whereSeparator: { $0.isWhitespace }).joined(separator: " ")
    }

    /// Indices of the samples to keep with exact matching of the normalised text.
    public static func exact(_ samples: [Sample]) -> [Int] {
        var seen = Set<String>()
        return samples.indices.filter { seen.insert(key(samples[$0])).inserted }
    }

    /// Indices to keep with MinHash LSH over word n-grams: samples whose estimated and then
    /// verified Jaccard similarity is at least `threshold` are clustered, and the first kept.
    public static func minHash(_ samples: [Sample], threshold: Double = 0.8, permutations: Int = 128, ngram: Int = 5) -> [Int] {
        let shingles = samples.map { shingleSet(key($0), n: ngram) }
        let (bands, rows) = bandLayout(permutations: permutations, threshold: threshold)
        let signatures = shingles.map { signature($0, permutations: bands * rows) }
        var parent = Array(samples.indices)
        func find(_ x: Int) -> Int {
            var x = x
            while parent[x] != x { parent[x] = parent[parent[x]]; x = parent[x] }
            return x
        }
        for band in 0..<bands {
            var buckets: [[UInt64]: [Int]] = [:]
            for (index, signature) in signatures.enumerated() where !shingles[index].isEmpty {
                buckets[Array(signature[(band * rows)..<((band + 1) * rows)]), default: []].append(index)
            }
            for members in buckets.values where members.count > 1 {
                for other in members.dropFirst() {
                    let a = find(members[0]), b = find(other)
                    if a == b { continue }
                    if jaccard(shingles[members[0]], shingles[other]) >= threshold { parent[max(a, b)] = min(a, b) }
                }
            }
        }
        var keptRoots = Set<Int>()
        return samples.indices.filter { keptRoots.insert(find($0)).inserted }
    }

    static func shingleSet(_ text: String, n: Int) -> Set<UInt64> {
        let words = text.split(separator: " ")
        if words.isEmpty { return [] }
        if words.count <= n { return [StableHash.value(words.joined(separator: " "))] }
        return Set((0...(words.count - n)).map { StableHash.value(words[$0..<($0 + n)].joined(separator: " ")) })
    }

    static func signature(_ shingles: Set<UInt64>, permutations: Int) -> [UInt64] {
        (0..<permutations).map { p in
            let salt = UInt64(p) &* 0x9E37_79B9_7F4A_7C15 &+ 0xD1B5_4A32_D192_ED03
            var best = UInt64.max
            for shingle in shingles {
                var z = shingle ^ salt
                z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
                z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
                best = min(best, z ^ (z >> 31))
            }
            return best
        }
    }

    /// Bands × rows = permutations with the S-curve's midpoint (1/b)^(1/r) closest to the threshold.
    static func bandLayout(permutations: Int, threshold: Double) -> (Int, Int) {
        var best = (permutations, 1)
        var bestError = Double.infinity
        for rows in 1...permutations where permutations % rows == 0 {
            let bands = permutations / rows
            let error = abs(pow(1 / Double(bands), 1 / Double(rows)) - threshold)
            if error < bestError { bestError = error; best = (bands, rows) }
        }
        return best
    }

    static func jaccard(_ a: Set<UInt64>, _ b: Set<UInt64>) -> Double {
        if a.isEmpty && b.isEmpty { return 1 }
        return Double(a.intersection(b).count) / Double(a.union(b).count)
    }
}
