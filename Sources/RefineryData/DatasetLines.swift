import Foundation
import RefineryCore
import RefineryText

/// One line of a JSONL dataset: its original JSON text (written back unchanged) and the sample
/// it holds.
public struct DatasetLine: Sendable {
    public var row: String
    public var sample: Sample
    /// Its line number in the file it was read from (1-based).
    public var lineNumber: Int = 0

    public init(row: String, sample: Sample, lineNumber: Int = 0) {
        self.row = row
        self.sample = sample
        self.lineNumber = lineNumber
    }
}

/// Reads and writes JSONL datasets keeping each line's original JSON.
public enum DatasetLines {
    /// Every non-blank line of `path` (any supported format, detected per line).
    public static func read(_ path: String) throws -> [DatasetLine] {
        var lines: [DatasetLine] = []
        let reader = DatasetReader()
        try LineReader.forEachLine(path: path) { line, number in
            lines.append(DatasetLine(row: line, sample: try reader.parse(line: line, lineNumber: number, source: path), lineNumber: number))
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

extension DatasetLines {
    /// Splits the dataset at `input` into `output` (train) and its `…test.jsonl` by a seeded hash
    /// of each sample's lineage id (or its text when it has none), rows unchanged; returns the
    /// counts.
    public static func split(_ input: String, into output: String, testFraction: Double, seed: UInt64) throws -> (train: Int, test: Int) {
        guard (0..<1).contains(testFraction) else { throw DataError("--test-fraction must be in [0, 1)") }
        var train: [String] = [], test: [String] = []
        for line in try read(input) {
            let id = (try? JSONValue.parse(line.row))?["lineage"]?["id"]?.stringValue ?? SampleKey.of(line.sample)
            if DatasetExport.isTest(id, fraction: testFraction, seed: seed) { test.append(line.row) } else { train.append(line.row) }
        }
        try write(train, to: output)
        try write(test, to: DatasetExport.testPath(for: output))
        return (train.count, test.count)
    }

    /// Converts every sample of `input` to `format` and writes `output` atomically; returns the
    /// number of samples. An error names the line.
    public static func convert(_ input: String, to format: DatasetFormat, output: String) throws -> Int {
        var rows: [String] = []
        try DatasetReader().read(path: input) { sample, line in
            do { rows.append(try DatasetConversion.row(sample, as: format).compactText) } catch let error as DataError {
                throw DataError("\(input):\(line): \(error.message)")
            }
        }
        try write(rows, to: output)
        return rows.count
    }
}
