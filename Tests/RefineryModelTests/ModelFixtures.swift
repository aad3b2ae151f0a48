import Foundation
import RefineryCore
import RefineryText

/// The reference checkpoints and expected values made by scripts/make_fixtures.py.
enum ModelFixtures {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")
    static let names = ["llama-gqa", "qwen2-tied", "mistral-sp"]

    static func directory(_ name: String) -> URL { root.appendingPathComponent(name) }

    static func expected(_ name: String) throws -> JSONValue {
        try JSONValue.parse(bytes: Array(try Data(contentsOf: directory(name).appendingPathComponent("expected.json"))))
    }

    static func ints(_ value: JSONValue?) -> [Int] { value?.arrayValue?.compactMap(\.intValue) ?? [] }

    /// A fresh temporary folder, removed by the caller.
    static func temporaryDirectory() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("refinery-test-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }
}
