import Foundation
import Testing
@testable import RefineryText

/// Token-for-token parity with Hugging Face `tokenizers` on the fixture tokenizers.
@Suite struct TokenizerParityTests {
    @Test(arguments: FixtureFiles.tokenizerNames)
    func encodingAndDecodingMatchTokenizers(name: String) throws {
        let tokenizer = try Tokenizer(contentsOf: FixtureFiles.root.appendingPathComponent("tokenizers/\(name)/tokenizer.json"))
        let cases = try FixtureFiles.json("tokenizers/\(name)/cases.json").arrayValue ?? []
        #expect(cases.count > 10)
        for testCase in cases {
            let text = try #require(testCase["text"]?.stringValue)
            let expectedIDs = testCase["ids"]?.arrayValue?.compactMap(\.intValue)
            let expectedPlain = testCase["ids_no_special"]?.arrayValue?.compactMap(\.intValue)
            let expectedOffsets = testCase["offsets_no_special"]?.arrayValue?.map { pair in
                (pair.arrayValue?[0].intValue ?? -1, pair.arrayValue?[1].intValue ?? -1)
            } ?? []
            let encoded = tokenizer.encode(text, addSpecialTokens: true)
            #expect(encoded.ids == expectedIDs, "\(name): ids of \(text.debugDescription)")
            let plain = tokenizer.encode(text, addSpecialTokens: false)
            #expect(plain.ids == expectedPlain, "\(name): ids without specials of \(text.debugDescription)")
            let offsetsMatch = plain.offsets.count == expectedOffsets.count
                && zip(plain.offsets, expectedOffsets).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
            #expect(offsetsMatch, "\(name): offsets of \(text.debugDescription): \(plain.offsets) vs \(expectedOffsets)")
            #expect(tokenizer.decode(encoded.ids) == testCase["decoded"]?.stringValue, "\(name): decode of \(text.debugDescription)")
            #expect(tokenizer.decode(encoded.ids, skipSpecialTokens: true) == testCase["decoded_skip_special"]?.stringValue,
                    "\(name): decode (skip special) of \(text.debugDescription)")
        }
    }
}
