import Foundation
import RefineryCore

/// When a run evaluates and checkpoints (one policy for `train` and the cluster).
public struct StepPolicy: Sendable, Equatable {
    /// Evaluate after every N steps and after the last; nil: never.
    public var evalEvery: Int?
    /// Checkpoint after every N steps and after the last.
    public var checkpointEvery: Int
    public var totalSteps: Int
    /// Whether there is an eval set at all.
    public var hasEvalSet: Bool

    public init(options: TrainingOptions, totalSteps: Int, hasEvalSet: Bool) {
        evalEvery = options.evalEvery
        checkpointEvery = options.checkpointEvery
        self.totalSteps = totalSteps
        self.hasEvalSet = hasEvalSet
    }

    /// Whether the eval loss is computed after `step` (1-based, just finished).
    public func evaluates(after step: Int) -> Bool {
        guard let evalEvery, hasEvalSet else { return false }
        return step % evalEvery == 0 || step == totalSteps
    }

    /// Whether the state is saved after `step`.
    public func checkpoints(after step: Int) -> Bool { step % checkpointEvery == 0 || step == totalSteps }
}

/// The one training loop's bookkeeping, shared by `refinery train` and the cluster's training
/// stage: restoring the newest checkpoint, the rows of `train_log.jsonl`, when to evaluate and
/// checkpoint, what a non-finite step says, and the files written at the end. Where the
/// gradients come from (this process, or workers) is the caller's business.
public final class TrainingDriver {
    public let trainer: Trainer
    public let policy: StepPolicy
    public let checkpoints: CheckpointStore
    public let log: TrainLog
    /// The folder the adapter (or model) and `train_log.jsonl` are written to.
    public let output: URL
    /// How to continue after a non-finite step, appended to the error (e.g. "lower --lr and
    /// resume with --resume").
    public let recoveryHint: String
    /// Receives the run's events (`checkpoint_written`); none by default.
    public var onEvent: (RunEvent) -> Void = { _ in }

    public init(trainer: Trainer, checkpoints: CheckpointStore, log: TrainLog, output: URL, recoveryHint: String) {
        self.trainer = trainer
        policy = StepPolicy(options: trainer.options, totalSteps: trainer.totalSteps, hasEvalSet: !trainer.evalSequences.isEmpty)
        self.checkpoints = checkpoints
        self.log = log
        self.output = output
        self.recoveryHint = recoveryHint
    }

    /// Restores the newest checkpoint (if `resume`) and drops log rows after it. Returns
    /// whether the run is already complete (its outputs are then written again: idempotent).
    public func begin(resume: Bool) throws -> Bool {
        do { try FileManager.default.createDirectory(at: output, withIntermediateDirectories: true) } catch {
            throw ModelError("cannot create the output folder \(output.path): \(error.localizedDescription)")
        }
        if resume { _ = try checkpoints.restoreLatest(into: trainer) }
        try log.truncate(after: trainer.step)
        if trainer.step >= trainer.totalSteps {
            try writeOutputs()
            return true
        }
        return false
    }

    /// Completes the step whose gradients are in the trainer's accumulator and logs it;
    /// a non-finite loss or norm stops with the last good checkpoint named.
    public func finishStep(lossSum: Double, tokens: Int) throws -> StepRecord {
        let record: StepRecord
        do { record = try trainer.finishStep(lossSum: lossSum, tokens: tokens) } catch let error as ModelError {
            let last = "the last good checkpoint is " + (checkpoints.latestDescription() ?? "none: no checkpoint was written yet")
            throw ModelError(error.message + "; " + last + ". " + recoveryHint)
        }
        try log.append(step: record.step, kind: "train", row: record.logLine)
        return record
    }

    /// Whether the step just finished is followed by an eval.
    public var evaluationDue: Bool { policy.evaluates(after: trainer.step) }

    /// Logs the eval loss of the current step.
    public func recordEval(loss: Double) throws {
        try log.append(step: trainer.step, kind: "eval", row: StepRecord.evalLogLine(step: trainer.step, loss: loss))
    }

    /// Checkpoints when due and, after the last step, writes the outputs. Returns whether the
    /// run is complete.
    public func endStep() throws -> Bool {
        if policy.checkpoints(after: trainer.step) {
            let place = try checkpoints.save(trainer)
            onEvent(RunEvent(source: "train", name: "checkpoint_written", message: "checkpoint of step \(trainer.step) written: \(place)",
                             fields: [("step", String(trainer.step)), ("checkpoint", place)]))
        }
        guard trainer.step >= trainer.totalSteps else { return false }
        try writeOutputs()
        return true
    }

    /// `train_log.jsonl` and the adapter (LoRA) or model folder (full) in `output`.
    public func writeOutputs() throws {
        do { try FileManager.default.createDirectory(at: output, withIntermediateDirectories: true) } catch {
            throw ModelError("cannot create the output folder \(output.path): \(error.localizedDescription)")
        }
        // The log as one file, whole (rewritten atomically even where the log is that file).
        let logURL = output.appendingPathComponent("train_log.jsonl")
        let text = try log.rows().map { $0 + "\n" }.joined()
        do { try Data(text.utf8).write(to: logURL, options: .atomic) } catch {
            throw ModelError("cannot write \(logURL.path): \(error.localizedDescription)")
        }
        try trainer.writeResult(to: output)
    }

    /// The whole run in this process: every step's gradients computed here. `progress` is
    /// called after every step; an error it throws stops the run where it is.
    public func runHere(resume: Bool, progress: (TrainingProgress) throws -> Void = { _ in }) throws {
        if try begin(resume: resume) { return }
        let start = Date()
        let startStep = trainer.step
        var tokensSeen = 0
        while true {
            let (lossSum, tokens) = try trainer.accumulateStep()
            let record = try finishStep(lossSum: lossSum, tokens: tokens)
            tokensSeen += record.tokens
            var evalLoss: Double? = nil
            if evaluationDue {
                let value = try trainer.evaluate()
                evalLoss = value
                try recordEval(loss: value)
            }
            let complete = try endStep()
            let elapsed = Date().timeIntervalSince(start)
            let done = trainer.step - startStep
            try progress(TrainingProgress(record: record, totalSteps: trainer.totalSteps, tokensPerSecond: Double(tokensSeen) / max(elapsed, 1e-9),
                                          secondsRemaining: elapsed / Double(max(done, 1)) * Double(trainer.totalSteps - trainer.step),
                                          evalLoss: evalLoss))
            if complete { return }
        }
    }
}
