import Foundation
import RefineryCore
import RefineryText

/// One line of a JSONL dataset: its original JSON text (written back unchanged) and the sample
/// it holds.
public struct DatasetLine: Sendable {
    public var row: String
    public var sample: Sample
}

/// Reads and writes JSONL datasets keeping each line's original JSON.
public enum DatasetLines {
    /// Every non-blank line of `path` (any supported format, detected per line).
    public static func read(_ path: String) throws -> [DatasetLine] {
        var lines: [DatasetLine] = []
        let reader = DatasetReader()
        try LineReader.forEachLine(path: path) { line, number in
            lines.append(DatasetLine(row: line, sample: try reader.parse(line: line, lineNumber: number, source: path)))
        }
        return lines
    }

    /// Writes `rows` as lines, atomically (the file is whole or unchanged).
    public static func write(_ rows: [String], to path: String) throws {
        do { try Data(rows.map { $0 + "\n" }.joined().utf8).write(to: URL(fileURLWithPath: path), options: .atomic) } catch {
            throw DataError("cannot write \(path): \(error.localizedDescription)")
        }
    }
}
