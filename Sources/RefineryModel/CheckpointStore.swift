import Foundation
import RefineryCore

/// Where a run keeps its resumable training state (parameters, AdamW moments, the step). The
/// one-process `train` keeps it in folders next to its outputs; the cluster's coordinator in its
/// SQLite state file. The training driver decides when to save; a store decides where.
public protocol CheckpointStore: AnyObject {
    /// Saves the trainer's state after its current step; returns how to name it to a user.
    func save(_ trainer: Trainer) throws -> String
    /// Puts the newest saved state into `trainer`; false when there is none.
    func restoreLatest(into trainer: Trainer) throws -> Bool
    /// The newest saved state, named for a user ("step 20, kept in the state file", a folder
    /// path), or nil when none was saved yet.
    func latestDescription() -> String?
}

/// The state of a checkpoint besides its tensors: one JSON object, the same in every store.
public enum CheckpointState {
    /// `{"step":…,"optimizer_steps":…,"total_steps":…}`.
    public static func json(of trainer: Trainer) -> JSONValue {
        .object([("step", .int(trainer.step)), ("optimizer_steps", .int(trainer.optimizer.stepCount)), ("total_steps", .int(trainer.totalSteps))])
    }

    /// Reads the step and AdamW's step count back.
    public static func parse(_ text: String) throws -> (step: Int, optimizerSteps: Int) {
        let value: JSONValue
        do { value = try JSONValue.parse(text) } catch { throw ModelError("the saved training state is not JSON: \(error)") }
        guard let step = value["step"]?.intValue, step >= 0 else { throw ModelError("the saved training state lacks its step: \(text.prefix(200))") }
        return (step, value["optimizer_steps"]?.intValue ?? step)
    }
}

/// Checkpoints as folders `OUT/checkpoints/step-NNNNNN` (parameters and moments as
/// safetensors, `state.json`), each staged and renamed so it is complete or absent. Keeps the
/// newest `keep` folders.
public final class FolderCheckpointStore: CheckpointStore {
    public let output: URL
    public let keep: Int

    public init(output: URL, keep: Int = 2) {
        self.output = output
        self.keep = max(1, keep)
    }

    public func save(_ trainer: Trainer) throws -> String {
        let folder = try trainer.saveCheckpoint(in: output)
        let root = output.appendingPathComponent("checkpoints")
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: root.path)) ?? []).filter { $0.hasPrefix("step-") }.sorted()
        for name in names.dropLast(keep) { try? FileManager.default.removeItem(at: root.appendingPathComponent(name)) }
        return folder.path
    }

    public func restoreLatest(into trainer: Trainer) throws -> Bool {
        guard let folder = Trainer.latestCheckpoint(in: output) else { return false }
        try trainer.restore(from: folder)
        return true
    }

    public func latestDescription() -> String? { Trainer.latestCheckpoint(in: output)?.path }
}
