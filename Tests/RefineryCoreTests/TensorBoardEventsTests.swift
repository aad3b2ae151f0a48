import Foundation
import Testing
@testable import RefineryCore

/// Event records equal, byte for byte, what the `tensorboard` package's own RecordWriter writes for
/// the same events (scripts/make_tensorboard_fixture.py), and CRC-32C matches its check value.
@Suite struct TensorBoardEventsTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/tensorboard")

    @Test func crc32cMatchesTheCastagnoliCheckValue() {
        #expect(TensorBoardEvents.crc32c(Array("123456789".utf8)) == 0xE306_9283)
        #expect(TensorBoardEvents.crc32c([]) == 0)
    }

    @Test func recordsEqualTensorBoardsOwnWriter() throws {
        let want = [UInt8](try Data(contentsOf: Self.root.appendingPathComponent("events.bin")))
        let spec = try JSONValue.parse(bytes: Array(try Data(contentsOf: Self.root.appendingPathComponent("events.json"))))
        var got = TensorBoardEvents.record(TensorBoardEvents.fileVersion(wallTime: try #require(spec["version_wall_time"]?.doubleValue)))
        for event in try #require(spec["events"]?.arrayValue) {
            let scalars = try #require(event["scalars"]?.arrayValue).map { pair -> (tag: String, value: Float) in
                (pair.arrayValue?.first?.stringValue ?? "", Float(pair.arrayValue?.last?.doubleValue ?? .nan))
            }
            got += TensorBoardEvents.record(TensorBoardEvents.scalars(scalars, step: try #require(event["step"]?.intValue),
                                                                      wallTime: try #require(event["wall_time"]?.doubleValue)))
        }
        #expect(got.count == want.count)
        #expect(got == want, "first difference at byte \((0..<min(got.count, want.count)).first { got[$0] != want[$0] } ?? -1)")
    }

    @Test func anEventFileStartsWithTheVersionAndGrowsByRecords() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("tb-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: folder) }
        let file = try TensorBoardEventFile(directory: folder, wallTime: 1700000000.25)
        #expect(file.url.lastPathComponent.hasPrefix("events.out.tfevents.1700000000."))
        let version = TensorBoardEvents.record(TensorBoardEvents.fileVersion(wallTime: 1700000000.25))
        #expect([UInt8](try Data(contentsOf: file.url)) == version)
        try file.write([("train/loss", 1.5)], step: 3, wallTime: 1700000001)
        let event = TensorBoardEvents.record(TensorBoardEvents.scalars([("train/loss", 1.5)], step: 3, wallTime: 1700000001))
        #expect([UInt8](try Data(contentsOf: file.url)) == version + event, "written through, readable while the run goes on")
    }
}
