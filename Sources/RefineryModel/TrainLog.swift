import Foundation

/// The rows of `train_log.jsonl` as a run writes them: one training row per step and an eval
/// row after the steps that evaluate. Rows after a restored checkpoint are dropped on resume
/// and computed again (exactly), so the log never holds a step twice.
public protocol TrainLog: AnyObject {
    /// Appends a row for `step`; `kind` is "train" or "eval".
    func append(step: Int, kind: String, row: String) throws
    /// Drops the rows of steps after `step`.
    func truncate(after step: Int) throws
    /// Every row, in step order (a step's training row before its eval row).
    func rows() throws -> [String]
}

/// `train_log.jsonl` in the output folder itself, appended row by row.
public final class FileTrainLog: TrainLog {
    public let url: URL

    public init(url: URL) { self.url = url }

    public func rows() throws -> [String] {
        guard FileManager.default.fileExists(atPath: url.path) else { return [] }
        do { return try String(contentsOf: url, encoding: .utf8).split(separator: "\n").map(String.init) } catch {
            throw ModelError("cannot read \(url.path): \(error.localizedDescription)")
        }
    }

    public func truncate(after step: Int) throws {
        let kept = try rows().filter { StepRecord.step(ofLogRow: $0).map { $0 <= step } ?? false }
        do { try Data(kept.map { $0 + "\n" }.joined().utf8).write(to: url, options: .atomic) } catch {
            throw ModelError("cannot write \(url.path): \(error.localizedDescription)")
        }
    }

    public func append(step: Int, kind: String, row: String) throws {
        guard let handle = FileHandle(forWritingAtPath: url.path) else { throw ModelError("cannot write \(url.path)") }
        defer { try? handle.close() }
        do {
            _ = try handle.seekToEnd()
            try handle.write(contentsOf: Data((row + "\n").utf8))
        } catch {
            throw ModelError("cannot write \(url.path): \(error.localizedDescription)")
        }
    }
}
