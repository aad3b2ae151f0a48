import Foundation
import RefineryCore
import RefineryText
import Testing
@testable import RefineryCuration

/// MinHash-LSH: the band layout against datasketch, shingles, signatures and clustering.
@Suite struct MinHashTests {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")

    @Test func bandLayoutsAreDatasketchs() throws {
        let json = try JSONValue.parse(bytes: Array(try Data(contentsOf: Self.fixtures.appendingPathComponent("lsh_bands.json"))))
        let cases = try #require(json["cases"]?.arrayValue)
        #expect(cases.count == 72)
        for c in cases {
            let threshold = try #require(c["threshold"]?.doubleValue), perms = try #require(c["num_perm"]?.intValue)
            let got = LSHBands.optimal(threshold: threshold, permutations: perms,
                                       falsePositiveWeight: try #require(c["false_positive_weight"]?.doubleValue),
                                       falseNegativeWeight: try #require(c["false_negative_weight"]?.doubleValue))
            #expect(got == LSHBands(bands: try #require(c["bands"]?.intValue), rows: try #require(c["rows"]?.intValue)), "\(c.compactText)")
        }
    }

    @Test func normalisationIsStatedStepByStep() {
        let text = "  Hello,   WORLD!\tÉtat  — «ok»  "
        #expect(TextNormalization.exact.apply(text) == "hello, world! état — «ok»")
        #expect(TextNormalization.fuzzy.apply(text) == "hello world état ok", "the dash and guillemets are punctuation")
        #expect(TextNormalization.fuzzy.apply("decimal.Decimal('x')") == TextNormalization.fuzzy.apply("decimal . Decimal ( 'x' )"))
        #expect(TextNormalization(lowercase: false, collapseWhitespace: true, stripPunctuation: false).apply(text) == "Hello, WORLD! État — «ok»")
        #expect(TextNormalization(lowercase: true, collapseWhitespace: false).apply("A  B") == "a  b")
    }

    @Test func shinglesFollowTheNormalisedWords() {
        let words = Shingling.words(2)
        #expect(words.hashes("a b c", normalization: .fuzzy).count == 2)
        #expect(words.hashes("A,  b c!", normalization: .fuzzy) == words.hashes("a b c", normalization: .fuzzy))
        #expect(words.hashes("a", normalization: .fuzzy).count == 1, "a text shorter than a shingle is one shingle")
        #expect(words.hashes("  ,, ", normalization: .fuzzy).isEmpty)
        #expect(Set(words.hashes("a b c", normalization: .fuzzy)) != Set(words.hashes("b c a", normalization: .fuzzy)))
        #expect(Shingling.characters(3).hashes("abcd", normalization: .fuzzy).count == 2)
    }

    /// The fraction of equal signature values estimates the Jaccard similarity of the shingle sets.
    @Test func signaturesEstimateJaccardSimilarity() {
        let deduplicator = MinHashDeduplicator(settings: MinHashSettings(permutations: 512, shingling: .words(1)))
        let base = (0..<200).map { "w\($0)" }
        let a = base.joined(separator: " "), b = (base.prefix(150) + (200..<250).map { "w\($0)" }).joined(separator: " ")
        let signatures = deduplicator.signatures([a, b])
        let agree = (0..<512).filter { signatures[$0] == signatures[512 + $0] }.count
        let estimate = Double(agree) / 512, truth = 150.0 / 250.0
        #expect(abs(estimate - truth) < 0.07, "estimate \(estimate) vs Jaccard \(truth)")
    }

    @Test func nearCopiesClusterAndTheKeepRuleDecides() {
        let original = "The quick brown fox jumps over the lazy dog while the farmer watches from the old wooden fence near the barn."
        let texts = [
            original,
            "Completely unrelated sentence about databases, indexes and the cost of a full table scan on large relations.",
            original.uppercased(),                                            // case flipped
            original.replacingOccurrences(of: " ", with: "  ") + " Indeed.",  // whitespace doubled, one word added
            "",                                                               // no shingles: matches nothing
            "",
        ]
        let deduplicator = MinHashDeduplicator(settings: MinHashSettings(threshold: 0.7))
        #expect(deduplicator.keptMembers(texts) == [0, 1, 0, 0, 4, 5])
        #expect(deduplicator.keptMembers(texts, rule: .longest) == [3, 1, 3, 3, 4, 5])
        #expect(deduplicator.keptMembers(texts, rule: .highestScore, scores: [0.1, nil, 0.9, nil, nil, nil]) == [2, 1, 2, 2, 4, 5])
        #expect(MinHashDeduplicator(settings: MinHashSettings(threshold: 0.99)).keptMembers(texts)[3] == 3,
                "at 0.99 the copy with an added word is no longer a near copy")
    }

    @Test func exactDedupComparesTheNormalisedTextsHash() {
        let texts = ["Hello   World", "hello world", "hello, world", "Other"]
        #expect(ExactDeduplicator().keptMembers(texts) == [0, 0, 2, 3])
        #expect(ExactDeduplicator(normalization: .fuzzy).keptMembers(texts) == [0, 0, 0, 3])
        #expect(ExactDeduplicator(normalization: .fuzzy).keptMembers(["a.b", "a b", "ab"]) == [0, 0, 2])
        #expect(ExactDeduplicator(normalization: TextNormalization(lowercase: false)).keptMembers(texts) == [0, 1, 2, 3])
        #expect(ExactDeduplicator().key("a") == "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb", "SHA-256 of the normalised text")
    }

    /// Samples compare by their instruction and answer; an answer reworded in one place is a near
    /// copy at 0.7, not at 0.99.
    @Test func samplesCompareByInstructionAndAnswer() {
        func pair(_ q: String, _ a: String) -> Sample {
            .chat([ChatMessage(role: "system", content: "Be brief."), ChatMessage(role: "user", content: q), ChatMessage(role: "assistant", content: a)])
        }
        let long = "Gradient accumulation adds the gradients of several micro batches before one optimizer step so that a large batch fits in small memory and the loss stays weighted by tokens"
        let nearCopy = long.replacingOccurrences(of: "small memory", with: "little memory")
        let different = "Packing lays samples end to end in one row and masks attention so that no sample sees another one at all during training steps"
        let texts = [pair("Explain accumulation.", long), pair("Explain accumulation.", nearCopy), pair("Explain packing.", different),
                     pair("explain  accumulation.", long)].map(ComparedText.of)
        #expect(texts[0] == "Explain accumulation.\n" + long, "system turns are not compared")
        #expect(MinHashDeduplicator(settings: MinHashSettings(threshold: 0.7, shingling: .words(3))).keptMembers(texts) == [0, 0, 2, 0])
        #expect(MinHashDeduplicator(settings: MinHashSettings(threshold: 0.99, shingling: .words(3))).keptMembers(texts) == [0, 1, 2, 0])
        #expect(ExactDeduplicator().keptMembers(texts) == [0, 1, 2, 0])
    }

    @Test func badSettingsAreNamed() {
        #expect(MinHashSettings(threshold: 0).problem?.contains("threshold") == true)
        #expect(MinHashSettings(permutations: 64, bands: LSHBands(bands: 14, rows: 8)).problem?.contains("at most num_perm") == true)
        #expect(MinHashSettings(shingling: .words(0)).problem?.contains("shingle") == true)
        #expect(MinHashSettings().problem == nil)
    }
}
