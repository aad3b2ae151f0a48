import RefineryCore
import Testing
@testable import RefineryCuration

/// Mixing: stated amounts, upsampling by repetition, lineage, and the same mix for the same seed.
@Suite struct MixingTests {
    static func rows(_ prefix: String, _ count: Int) -> [String] {
        (0..<count).map { JSONValue.object([("text", .string("\(prefix) \($0)")), ("lineage", .object([("id", .string("\(prefix)-\($0)"))]))]).compactText }
    }

    @Test func amountsLineageAndDeterminism() throws {
        let sources = [DatasetMixer.Source(name: "generated.jsonl", rows: Self.rows("g", 10), amount: .all),
                       DatasetMixer.Source(name: "general.jsonl", rows: Self.rows("f", 4), amount: .ratio(0.5)),
                       DatasetMixer.Source(name: "extra.jsonl", rows: Self.rows("e", 3), amount: .count(7))]
        let (rows, counts) = try DatasetMixer(seed: 3).mix(sources)
        #expect(counts.map(\.1) == [10, 5, 7] && rows.count == 22)
        let parsed = try rows.map { try JSONValue.parse($0) }
        func from(_ source: String) -> [JSONValue] { parsed.filter { $0["lineage"]?["source"]?.stringValue == source } }
        #expect(from("generated.jsonl").count == 10 && from("general.jsonl").count == 5 && from("extra.jsonl").count == 7)
        #expect(Set(from("general.jsonl").compactMap { $0["text"]?.stringValue }).count == 4, "5 of 4 rows: every row once, one twice")
        #expect(Set(from("extra.jsonl").compactMap { $0["text"]?.stringValue }).count == 3, "upsampled: repeated whole, then sampled")
        #expect(from("generated.jsonl").allSatisfy { $0["lineage"]?["id"]?.stringValue?.hasPrefix("g-") == true }, "other lineage fields stay")
        #expect(try DatasetMixer(seed: 3).mix(sources).rows == rows, "the same seed gives the same mix")
        #expect(try DatasetMixer(seed: 4).mix(sources).rows != rows, "another seed shuffles differently")
        #expect(throws: CoreError.self) { _ = try DatasetMixer().mix([DatasetMixer.Source(name: "empty", rows: [], amount: .count(2))]) }
        #expect(try DatasetMixer().mix([DatasetMixer.Source(name: "empty", rows: [], amount: .all)]).rows.isEmpty, "an empty source mixes to nothing")
        for amount in [DatasetMixer.Amount.count(Int.max), .count(-1), .ratio(1e300), .ratio(.nan)] {
            #expect(throws: CoreError.self, "\(amount)") { _ = try DatasetMixer().mix(sources.prefix(1) + [DatasetMixer.Source(name: "x", rows: Self.rows("x", 2), amount: amount)]) }
        }
    }
}
