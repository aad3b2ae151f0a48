import Foundation
import RefineryCore
import Testing
import RefineryText

/// Streaming detokenization: the pieces handed out one token at a time add up to the whole
/// decode — also when a token completes a multi-byte character, or brings a combining mark that
/// joins the character before it; random ids (broken UTF-8 included) never stall the stream.
@Suite struct StreamingDecoderTests {
    @Test(arguments: ["llama3-bytelevel", "llama2-sentencepiece"]) func piecesAddUpToTheWholeDecode(tokenizerName: String) throws {
        let tokenizer = try Tokenizer(contentsOf: FixtureFiles.root.appendingPathComponent("tokenizers/\(tokenizerName)/tokenizer.json"))
        var generator = SplitMix64(seed: 11)
        var texts = ["e\u{0301}te\u{0301} cafe\u{0301}", "日本語のテキスト", "naïve 👩‍👩‍👧 done"].map { tokenizer.encode($0, addSpecialTokens: false).ids }
        for _ in 0..<100 { texts.append((0..<12).map { _ in Int(generator.next() % UInt64(tokenizer.vocabularySize)) }) }
        for ids in texts {
            var stream = StreamingDecoder(tokenizer: tokenizer)
            var joined = ""
            for id in ids { joined += stream.append(id) }
            joined += stream.finish()
            let whole = tokenizer.decode(ids, skipSpecialTokens: true)
            if whole.contains("\u{FFFD}") {
                // Broken UTF-8 may be replaced differently piece by piece (a byte after a broken one
                // may show on its own); every character of the whole decode still arrives, in order.
                var rest = ArraySlice(joined.unicodeScalars.filter { $0 != "\u{FFFD}" })
                let all = whole.unicodeScalars.filter { $0 != "\u{FFFD}" }.allSatisfy { scalar in
                    guard let found = rest.firstIndex(of: scalar) else { return false }
                    rest = rest[rest.index(after: found)...]
                    return true
                }
                #expect(all, "\(ids): \(joined.debugDescription) vs \(whole.debugDescription)")
            } else {
                #expect(Array(joined.unicodeScalars) == Array(whole.unicodeScalars), "\(ids)")
            }
        }
    }
}
