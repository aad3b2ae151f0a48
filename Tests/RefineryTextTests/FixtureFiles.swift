import Foundation
import RefineryCore
import RefineryText

/// Locates this test target's committed fixtures (made by scripts/make_fixtures.py).
enum FixtureFiles {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")

    static func json(_ relativePath: String) throws -> JSONValue {
        let data = try Data(contentsOf: root.appendingPathComponent(relativePath))
        return try JSONValue.parse(bytes: Array(data))
    }

    static var tokenizerNames: [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: root.appendingPathComponent("tokenizers").path)) ?? []
        return names.sorted()
    }
}
