import Foundation

/// Removes training samples that contain evaluation data: an exact copy of an eval sample (text
/// normalised), a shared word n-gram (13 words by default, as GPT-3's and datatrove's
/// decontamination; an eval text shorter than that, of at least 3 words, must appear whole — found
/// by hashing the training text's runs of each such length, not by substring search), or a near
/// copy by MinHash.
/// Only training samples are ever judged; eval sets are read, never written.
public struct Decontaminator: Sendable {
    /// One evaluation sample: where it comes from (file and line) and its text.
    public struct EvalSample: Sendable {
        public var source: String
        public var text: String

        public init(source: String, text: String) {
            self.source = source
            self.text = text
        }
    }

    /// Why a training sample is contaminated.
    public struct Match: Sendable, Equatable {
        public enum Kind: String, Sendable { case exact, ngram, minhash }
        public var kind: Kind
        /// The eval sample matched (its index in the eval list).
        public var eval: Int
        /// The shared n-gram (normalised words), for `ngram`.
        public var ngram: String?
        /// The estimated Jaccard similarity, for `minhash`.
        public var similarity: Double?
    }

    public var ngram: Int
    public var normalization: TextNormalization
    /// MinHash near-copy detection; nil turns it off.
    public var minHash: MinHashSettings?

    public init(ngram: Int = 13, normalization: TextNormalization = .fuzzy, minHash: MinHashSettings? = MinHashSettings()) {
        self.ngram = ngram
        self.normalization = normalization
        self.minHash = minHash
    }

    /// For each training text, the first way it matches an eval sample (exact, then n-gram, then
    /// MinHash), or nil when it is clean.
    public func matches(train: [String], eval: [EvalSample]) -> [Match?] {
        // Eval texts by their normalised text's digest (exact copies), by their n-grams, and — when
        // shorter than `ngram` (but at least 3 words) — as one run of that many words to look for.
        var evalByKey: [String: Int] = [:]
        var evalByNgram: [UInt64: Int] = [:]
        var shortEval: [Int: [UInt64: Int]] = [:]
        for (index, sample) in eval.enumerated() {
            let normalized = normalization.apply(sample.text)
            let key = ContentDigest.sha256(normalized)
            if evalByKey[key] == nil { evalByKey[key] = index }
            let wordHashes = Shingling.wordHashes(normalized, normalization: normalization)
            if wordHashes.count >= ngram {
                for hash in Shingling.runs(of: wordHashes, n: ngram) where evalByNgram[hash] == nil { evalByNgram[hash] = index }
            } else if wordHashes.count >= 3, let hash = Shingling.runs(of: wordHashes, n: wordHashes.count).first {
                if shortEval[wordHashes.count]?[hash] == nil { shortEval[wordHashes.count, default: [:]][hash] = index }
            }
        }
        let shortTables = shortEval.sorted { $0.key > $1.key }
        // Each training text is normalised and its words hashed once; every check reads those.
        var result: [Match?] = train.map { text in
            let normalized = normalization.apply(text)
            if let index = evalByKey[ContentDigest.sha256(normalized)] { return Match(kind: .exact, eval: index) }
            let wordHashes = Shingling.wordHashes(normalized, normalization: normalization)
            func words(_ range: Range<Int>) -> String { normalized.split(separator: " ")[range].joined(separator: " ") }
            if wordHashes.count >= ngram {
                let hashes = Shingling.runs(of: wordHashes, n: ngram)
                if let position = hashes.firstIndex(where: { evalByNgram[$0] != nil }), let index = evalByNgram[hashes[position]] {
                    return Match(kind: .ngram, eval: index, ngram: words(position..<(position + ngram)))
                }
            }
            for (length, table) in shortTables where wordHashes.count >= length {
                let hashes = Shingling.runs(of: wordHashes, n: length)
                if let position = hashes.firstIndex(where: { table[$0] != nil }), let index = table[hashes[position]] {
                    return Match(kind: .ngram, eval: index, ngram: words(position..<(position + length)))
                }
            }
            return nil
        }
        if let minHash {
            let near = MinHashDeduplicator(settings: minHash).nearestIndexed(queries: train, index: eval.map(\.text))
            for (i, hit) in near.enumerated() where result[i] == nil {
                if let hit { result[i] = Match(kind: .minhash, eval: hit.index, similarity: hit.similarity) }
            }
        }
        return result
    }
}
