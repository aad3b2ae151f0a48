import Foundation
import RefineryCore
import Testing

/// The one FNV-1a, line reading and JSON round trips every module relies on.
@Suite struct StableHashTests {
    @Test func fnv1aMatchesThePublishedTestVectors() {
        // From the FNV reference test suite (64-bit FNV-1a).
        #expect(StableHash.value("") == 0xCBF2_9CE4_8422_2325)
        #expect(StableHash.hex("a") == "af63dc4c8601ec8c")
        #expect(StableHash.hex("foobar") == "85944171f73967e8")
    }

    @Test func incrementalHashingEqualsOneShotAndSeedsChangeTheResult() {
        var hasher = StableHasher()
        hasher.combine("foo")
        Array("bar".utf8).withUnsafeBytes { hasher.combine(bytes: $0) }
        #expect(hasher.value == StableHash.value("foobar"))
        var seeded = StableHasher(seed: 42)
        seeded.combine("foobar")
        #expect(seeded.value != hasher.value)
        // A word is one FNV round: xor the whole word, multiply by the prime.
        var word = StableHasher(seed: 7)
        word.combine(word: 0x1234)
        #expect(word.value == (StableHasher.offsetBasis ^ 7 ^ 0x1234) &* StableHasher.prime)
    }

    @Test func lineReaderNumbersLinesSkipsBlanksAndNamesBadUTF8() throws {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("refinery-core-\(UUID().uuidString).jsonl")
        try Data("one\n\n  \ntwo\r\nthree".utf8).write(to: url)
        var seen: [(String, Int)] = []
        try LineReader.forEachLine(path: url.path) { seen.append(($0, $1)) }
        #expect(seen.map(\.0) == ["one", "two\r", "three"] && seen.map(\.1) == [1, 4, 5])
        try Data([0x61, 0x0A, 0xC3, 0x28, 0x0A]).write(to: url)
        #expect(throws: CoreError.self) { try LineReader.forEachLine(path: url.path) { _, _ in } }
        do { try LineReader.forEachLine(path: url.path) { _, _ in } } catch let error as CoreError {
            #expect(error.message.contains(":2") && error.message.contains("UTF-8"), "\(error.message)")
        }
        #expect(throws: CoreError.self) { try LineReader.forEachLine(path: url.path + ".absent") { _, _ in } }
    }

    @Test func jsonKeepsKeyOrderAndRoundTrips() throws {
        let text = #"{"b":1,"a":[true,null,2.5,"x\"y"],"c":{"d":-3}}"#
        let value = try JSONValue.parse(text)
        #expect(value.compactText == text)
        #expect(value["a"]?.arrayValue?.count == 4 && value["c"]?["d"]?.intValue == -3)
        #expect(throws: JSONParseError.self) { try JSONValue.parse("{\"a\": }") }
    }
}
