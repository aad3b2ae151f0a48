import Foundation
import Testing
@testable import RefineryTensor

/// The code tables of the 8-bit optimizer find the same code as a binary search over the map's
/// midpoints: on every midpoint and its float neighbours (where a code changes), on ±0, ±1 and
/// the smallest magnitudes, and on 200,000 seeded values spread over every decade of [-1, 1].
@Suite struct DynamicMapTests {
    @Test(arguments: ["signed", "unsigned"])
    func tableCodesEqualTheSearchedNearestCode(name: String) {
        let map = name == "signed" ? DynamicMap.signedCodeMap : DynamicMap.unsignedCodeMap
        let midpoints = DynamicMap.midpoints(name == "signed" ? DynamicMap.signed : DynamicMap.unsigned)
        var values: [Float] = [0, -0.0, 1, -1, .leastNonzeroMagnitude, -.leastNonzeroMagnitude, 1e-38, -1e-38, 1e-7, -1e-7]
        for midpoint in midpoints { values += [midpoint, midpoint.nextUp, midpoint.nextDown, -midpoint, (-midpoint).nextUp] }
        var generator = SplitMix64Test(seed: 11)
        for _ in 0..<200_000 {
            let magnitude = Float(pow(10, -9 * Double(generator.next() % 1_000_000) / 1_000_000))
            values.append(generator.next() % 2 == 0 ? magnitude : -magnitude)
        }
        var mismatches: [Float] = []
        for value in values where map.tableCode(value) != map.searchedCode(value) { mismatches.append(value) }
        #expect(mismatches.isEmpty, "\(mismatches.count) values code differently, e.g. \(mismatches.prefix(5))")
        // The codes are not trivial: the search spans the whole map.
        #expect(Set(values.map { map.tableCode($0) }).count > 200)
    }
}
