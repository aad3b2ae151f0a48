import Foundation
import RefineryCore

/// A training log that also writes every row to a TensorBoard event file (`--report-to
/// tensorboard`): per training step `train/loss`, `train/grad_norm`, `train/learning_rate`,
/// `train/tokens` and `train/tokens_per_second` (the step's tokens over the wall time since the
/// previous step's row, from the second row on); per evaluation `eval/loss`. The rows themselves
/// go to `inner`, which stays the run's record; a resumed run starts a new event file (TensorBoard
/// reads a folder's files as one run).
public final class TensorBoardTrainLog: TrainLog {
    public let inner: any TrainLog
    public let events: TensorBoardEventFile
    private var lastTrainRow: Double?

    /// Opens a new event file in `directory`.
    public init(wrapping inner: any TrainLog, directory: URL) throws {
        self.inner = inner
        events = try TensorBoardEventFile(directory: directory)
    }

    public func append(step: Int, kind: String, row: String) throws {
        try inner.append(step: step, kind: kind, row: row)
        guard let json = try? JSONValue.parse(row) else { return }
        let now = Date().timeIntervalSince1970
        var scalars: [(tag: String, value: Float)] = []
        if kind == "eval" {
            if let loss = json["eval_loss"]?.doubleValue { scalars.append(("eval/loss", Float(loss))) }
        } else {
            for (key, tag) in [("loss", "train/loss"), ("grad_norm", "train/grad_norm"), ("lr", "train/learning_rate"), ("tokens", "train/tokens")] {
                if let value = json[key]?.doubleValue { scalars.append((tag, Float(value))) }
            }
            if let last = lastTrainRow, let tokens = json["tokens"]?.doubleValue, now > last {
                scalars.append(("train/tokens_per_second", Float(tokens / (now - last))))
            }
            lastTrainRow = now
        }
        if !scalars.isEmpty { try events.write(scalars, step: step, wallTime: now) }
    }

    public func truncate(after step: Int) throws { try inner.truncate(after: step) }

    public func rows() throws -> [String] { try inner.rows() }
}
