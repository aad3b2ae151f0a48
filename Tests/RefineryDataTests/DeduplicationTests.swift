import Testing
@testable import RefineryData
import RefineryText

/// Exact and MinHash deduplication keep the first of each cluster.
@Suite struct DeduplicationTests {
    static func pair(_ q: String, _ a: String) -> Sample {
        .chat([ChatMessage(role: "user", content: q), ChatMessage(role: "assistant", content: a)])
    }

    static let long = "Gradient accumulation adds the gradients of several micro batches before one optimizer step so that a large batch fits in small memory and the loss stays weighted by tokens"

    @Test func exactIgnoresCaseAndSpacing() {
        let samples = [Self.pair("What is it?", "A thing."), Self.pair("what  is it?", "a thing."), Self.pair("What is it?", "Another thing.")]
        #expect(Deduplication.exact(samples) == [0, 2])
    }

    @Test func minHashFindsNearDuplicatesOnly() {
        let nearCopy = Self.long.replacingOccurrences(of: "small memory", with: "little memory")
        let different = "Packing lays samples end to end in one row and masks attention so that no sample sees another one at all during training steps"
        let samples = [Self.pair("Explain accumulation.", Self.long), Self.pair("Explain accumulation.", nearCopy),
                       Self.pair("Explain packing.", different), Self.pair("Explain accumulation.", Self.long)]
        #expect(Deduplication.minHash(samples, threshold: 0.7, permutations: 128, ngram: 3) == [0, 2])
        #expect(Deduplication.minHash(samples, threshold: 0.99, permutations: 128, ngram: 3) == [0, 1, 2])
        #expect(Deduplication.jaccard(Deduplication.shingleSet("a b c d", n: 2), Deduplication.shingleSet("a b c e", n: 2)) == 0.5)
    }
}
