/// Counts that describe a dataset: lengths of instructions and answers (tokens with a tokenizer,
/// else words), lexical diversity (distinct-1 and distinct-2: distinct n-grams over all n-grams of
/// the answers) and the most frequent words and word pairs (stop words left out).
public struct DatasetStatistics: Sendable {
    /// How lengths are counted: "tokens" or "words".
    public var unit: String
    public var instructionLengths: [Int]
    public var answerLengths: [Int]
    public var distinct1: Double
    public var distinct2: Double
    public var topWords: [(term: String, count: Int)]
    public var topBigrams: [(term: String, count: Int)]

    /// The statistics of `samples`; `countTokens` counts a text's tokens (nil: words are counted).
    public static func of(_ samples: [SampleParts], countTokens: ((String) -> Int)? = nil, top: Int = 20) -> DatasetStatistics {
        let count: (String) -> Int = countTokens ?? { TextWords.of($0).count }
        var unigrams: [String: Int] = [:], bigrams: [String: Int] = [:]
        var totalUnigrams = 0, totalBigrams = 0
        for sample in samples {
            let words = TextWords.of(sample.answer)
            totalUnigrams += words.count
            totalBigrams += max(0, words.count - 1)
            for word in words { unigrams[word, default: 0] += 1 }
            for (a, b) in zip(words, words.dropFirst()) { bigrams[a + " " + b, default: 0] += 1 }
        }
        func ranked(_ counts: [String: Int], keep: (String) -> Bool) -> [(term: String, count: Int)] {
            counts.filter { keep($0.key) }.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }
                .prefix(top).map { (term: $0.key, count: $0.value) }
        }
        return DatasetStatistics(
            unit: countTokens == nil ? "words" : "tokens",
            instructionLengths: samples.map { count($0.instruction) }, answerLengths: samples.map { count($0.answer) },
            distinct1: totalUnigrams == 0 ? 0 : Double(unigrams.count) / Double(totalUnigrams),
            distinct2: totalBigrams == 0 ? 0 : Double(bigrams.count) / Double(totalBigrams),
            topWords: ranked(unigrams) { !TextWords.isStopWord($0) && $0.count > 1 },
            topBigrams: ranked(bigrams) { !$0.split(separator: " ").allSatisfy { TextWords.isStopWord(String($0)) } })
    }
}

/// Histogram bins over integer values.
public struct Histogram: Sendable, Equatable {
    /// `[lower, upper)` and how many values fall in it.
    public var bins: [(lower: Int, upper: Int, count: Int)]

    public static func == (a: Histogram, b: Histogram) -> Bool {
        a.bins.count == b.bins.count && zip(a.bins, b.bins).allSatisfy { $0.lower == $1.lower && $0.upper == $1.upper && $0.count == $1.count }
    }

    /// Up to `maxBins` bins of one round width covering `values`.
    public init(_ values: [Int], maxBins: Int = 24) {
        guard let low = values.min(), let high = values.max() else { bins = []; return }
        let span = high - low + 1
        var width = 1
        for step in [1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000, 10_000, 100_000] {
            width = step
            if (span + step - 1) / step <= maxBins { break }
        }
        if (span + width - 1) / width > maxBins { width = (span + maxBins - 1) / maxBins }
        let start = low / width * width
        let binCount = (high - start) / width + 1
        var counts = [Int](repeating: 0, count: binCount)
        for value in values { counts[(value - start) / width] += 1 }
        bins = counts.enumerated().map { (lower: start + $0.offset * width, upper: start + ($0.offset + 1) * width, count: $0.element) }
    }

    /// The value at quantile `q` (0…1) of `values`, or 0 when empty.
    public static func quantile(_ values: [Int], _ q: Double) -> Int {
        guard !values.isEmpty else { return 0 }
        let sorted = values.sorted()
        return sorted[min(sorted.count - 1, max(0, Int((Double(sorted.count - 1) * q).rounded())))]
    }
}

/// Lowercased words of a text (punctuation as separators), and English stop words.
public enum TextWords {
    public static func of(_ text: String) -> [String] {
        TextNormalization.fuzzy.apply(text).split(separator: " ").map(String.init)
    }

    public static func isStopWord(_ word: String) -> Bool { stopWords.contains(word) || word.allSatisfy(\.isNumber) }

    static let stopWords: Set<String> = [
        "a", "about", "above", "after", "again", "all", "also", "an", "and", "any", "are", "as", "at", "be", "because", "been",
        "before", "being", "between", "both", "but", "by", "can", "could", "did", "do", "does", "doing", "during", "each", "for",
        "from", "further", "had", "has", "have", "having", "he", "her", "here", "hers", "him", "his", "how", "i", "if", "in", "into",
        "is", "it", "its", "itself", "just", "me", "more", "most", "my", "no", "nor", "not", "now", "of", "off", "on", "once",
        "only", "or", "other", "our", "ours", "out", "over", "own", "same", "she", "should", "so", "some", "such", "than", "that",
        "the", "their", "theirs", "them", "then", "there", "these", "they", "this", "those", "through", "to", "too", "under",
        "until", "up", "very", "was", "we", "were", "what", "when", "where", "which", "while", "who", "whom", "why", "will",
        "with", "would", "you", "your", "yours", "s", "t", "don", "use", "used", "using", "one", "may", "like", "get",
    ]
}
