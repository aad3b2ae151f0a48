import Foundation
import RefineryCore
import Testing
@testable import RefineryModel

/// Throws 100,000+ mutated headers at the safetensors parser: each must be refused with an error
/// or accepted with every invariant holding. A crash fails the whole run.
@Suite struct SafetensorsFuzzTests {
    typealias Generator = SplitMix64

    static let fragments: [String] = ["-1", "0", "18446744073709551616", "9223372036854775807", "1e9", "1.5", "null", "true",
                                      "\"F32\"", "\"BF16\"", "\"F16\"", "\"I8\"", "[]", "{}", "[0,0]", "\"\\u0000\"", "\"",
                                      "[", "]", "{", "}", ",", ":", "\"data_offsets\"", "\"shape\"", "\"dtype\"", "\"__metadata__\""]

    @Test func mutatedHeadersNeverCrashTheParser() throws {
        // A small valid file: four tensors in three dtypes, 256 bytes of data, so that mutations
        // are accepted often enough to check the invariants too.
        let headerText = Array(#"{"__metadata__":{"format":"pt"},"a.weight":{"dtype":"F32","shape":[4,8],"data_offsets":[0,128]},"a.bias":{"dtype":"BF16","shape":[8],"data_offsets":[128,144]},"b":{"dtype":"F16","shape":[2,4,7],"data_offsets":[144,256]},"empty":{"dtype":"F32","shape":[0,3],"data_offsets":[256,256]}}"#.utf8)
        let data = [UInt8](repeating: 0x3C, count: 256)
        let validFile: [UInt8] = (0..<8).map { UInt8((UInt64(headerText.count) >> (8 * UInt64($0))) & 0xFF) } + headerText + data
        #expect((try? validFile.withUnsafeBytes { try SafetensorsFile.parseHeader($0, path: "seed") }) != nil)
        var generator = Generator(seed: 0x5AFE_7E45)
        var accepted = 0, refused = 0
        let iterations = 100_000
        for iteration in 0..<iterations {
            var header = headerText
            let mutations = Int.random(in: 1...4, using: &generator)
            for _ in 0..<mutations {
                guard !header.isEmpty else { break }
                let position = Int.random(in: 0..<header.count, using: &generator)
                switch Int.random(in: 0..<6, using: &generator) {
                case 0: header[position] = UInt8.random(in: 0...255, using: &generator)
                case 1: header[position] ^= 1 << UInt8.random(in: 0..<8, using: &generator)
                case 2: header.remove(at: position)
                case 3:
                    let fragment = Array(Self.fragments.randomElement(using: &generator)!.utf8)
                    header.insert(contentsOf: fragment, at: position)
                case 4:
                    // Replace a run of digits with another number.
                    var end = position
                    while end < header.count && (0x30...0x39).contains(header[end]) { end += 1 }
                    let number = Array(String(Int.random(in: -5...50_000_000, using: &generator)).utf8)
                    header.replaceSubrange(position..<end, with: number)
                default:
                    header = Array(header.prefix(position))
                }
            }
            var length = UInt64(header.count)
            if iteration % 17 == 0 { length = UInt64.random(in: 0...UInt64(header.count + 64), using: &generator) }
            var file: [UInt8] = (0..<8).map { UInt8((length >> (8 * UInt64($0))) & 0xFF) }
            file += header
            file += data.prefix(Int.random(in: 0...4, using: &generator) == 0 ? Int.random(in: 0...256, using: &generator) : 256)
            do {
                let parsed = try file.withUnsafeBytes { try SafetensorsFile.parseHeader($0, path: "fuzz") }
                accepted += 1
                let dataSize = file.count - parsed.dataStart
                var ranges: [(Int, Int)] = []
                for entry in parsed.entries.values {
                    #expect(entry.begin >= 0 && entry.begin <= entry.end && entry.end <= dataSize)
                    #expect(entry.end - entry.begin == entry.shape.reduce(1, *) * entry.dtype.size)
                    if entry.end > entry.begin { ranges.append((entry.begin, entry.end)) }
                }
                ranges.sort { $0.0 < $1.0 }
                for (a, b) in zip(ranges, ranges.dropFirst()) { #expect(b.0 >= a.1) }
            } catch let error as ModelError {
                refused += 1
                #expect(error.message.contains("fuzz"))
            }
        }
        #expect(accepted + refused == iterations)
        #expect(refused > iterations / 2)
        #expect(accepted > 0)
    }
}
