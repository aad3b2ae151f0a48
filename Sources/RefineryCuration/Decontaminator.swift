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
        let exact = ExactDeduplicator(normalization: normalization)
        var evalByKey: [String: Int] = [:]
        for (index, sample) in eval.enumerated() {
            let key = exact.key(sample.text)
            if evalByKey[key] == nil { evalByKey[key] = index }
        }
        // n-grams of eval texts with at least `ngram` words; shorter ones must appear whole.
        var evalByNgram: [UInt64: Int] = [:]
        // Short eval texts by their word count: each is one run of that many words to look for.
        var shortEval: [Int: [UInt64: Int]] = [:]
        for (index, sample) in eval.enumerated() {
            let words = normalization.apply(sample.text).split(separator: " ")
            if words.count >= ngram {
                for hash in Shingling.wordShingles64(sample.text, n: ngram, normalization: normalization) where evalByNgram[hash] == nil {
                    evalByNgram[hash] = index
                }
            } else if words.count >= 3, let hash = Shingling.wordShingles64(sample.text, n: words.count, normalization: normalization).first {
                if shortEval[words.count]?[hash] == nil { shortEval[words.count, default: [:]][hash] = index }
            }
        }
        let shortTables = shortEval.sorted { $0.key > $1.key }
        var result: [Match?] = train.map { text in
            if let index = evalByKey[exact.key(text)] { return Match(kind: .exact, eval: index) }
            let normalized = normalization.apply(text)
            let words = normalized.split(separator: " ")
            if words.count >= ngram {
                let hashes = Shingling.wordShingles64(text, n: ngram, normalization: normalization)
                if let position = hashes.firstIndex(where: { evalByNgram[$0] != nil }), let index = evalByNgram[hashes[position]] {
                    return Match(kind: .ngram, eval: index, ngram: words[position..<(position + ngram)].joined(separator: " "))
                }
            }
            for (length, table) in shortTables where words.count >= length {
                let hashes = Shingling.wordShingles64(text, n: length, normalization: normalization)
                if let position = hashes.firstIndex(where: { table[$0] != nil }), let index = table[hashes[position]] {
                    return Match(kind: .ngram, eval: index, ngram: words[position..<(position + length)].joined(separator: " "))
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
