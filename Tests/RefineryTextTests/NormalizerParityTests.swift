import Foundation
import RefineryCore
import Testing
@testable import RefineryText

/// Unicode edge cases of the normalizers (accents and marks right after ASCII, prepended marks,
/// keycaps, CR LF beside non-ASCII, compatibility forms, case mappings beyond ASCII) against Hugging
/// Face `tokenizers` (scripts/make_normalizer_cases.py): the BERT fixture tokenizers as they are,
/// and the byte-level fixture tokenizer with each Unicode normalizer put in.
@Suite struct NormalizerParityTests {
    @Test func unicodeEdgeCasesEncodeAsTokenizersDoes() throws {
        let variants = try #require(try FixtureFiles.json("normalizer-cases.json").arrayValue)
        #expect(variants.count == 8)
        for variant in variants {
            let name = try #require(variant["tokenizer"]?.stringValue)
            let url = FixtureFiles.root.appendingPathComponent("tokenizers/\(name)/tokenizer.json")
            var json = try JSONValue.parse(bytes: Array(try Data(contentsOf: url)))
            var label = name
            if let normalizer = variant["normalizer"], normalizer != .null {
                guard case var .object(fields) = json else { Issue.record("\(name): tokenizer.json is not an object"); continue }
                fields = fields.map { $0.0 == "normalizer" ? ($0.0, normalizer) : $0 }
                json = .object(fields)
                label += " with " + (variant["label"]?.stringValue ?? "?")
            }
            let tokenizer = try Tokenizer(json: json)
            let cases = try #require(variant["cases"]?.arrayValue)
            #expect(cases.count > 10)
            for testCase in cases {
                let text = try #require(testCase["text"]?.stringValue)
                let encoded = tokenizer.encode(text, addSpecialTokens: false)
                let ids = testCase["ids"]?.arrayValue?.compactMap(\.intValue)
                let offsets = testCase["offsets"]?.arrayValue?.map { pair in
                    [pair.arrayValue?[0].intValue ?? -1, pair.arrayValue?[1].intValue ?? -1]
                }
                #expect(encoded.ids == ids, "\(label): ids of \(text.debugDescription)")
                #expect(encoded.offsets.map { [$0.0, $0.1] } == offsets, "\(label): offsets of \(text.debugDescription)")
            }
        }
    }
}
