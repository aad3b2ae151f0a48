import Foundation
import RefineryCore
import RefineryModel
import RefineryStore

/// Checkpoints in the run's SQLite state file (the cluster's coordinator): parameters and AdamW
/// moments as named float32 blobs next to the state JSON, written in one transaction.
final class StateFileCheckpointStore: CheckpointStore {
    let store: RunStore

    init(store: RunStore) { self.store = store }

    func save(_ trainer: Trainer) throws -> String {
        try store.saveTrainingCheckpoint(step: trainer.step, state: CheckpointState.json(of: trainer).compactText, tensors: trainer.stateTensors())
        return "step \(trainer.step), kept in the state file"
    }

    func restoreLatest(into trainer: Trainer) throws -> Bool {
        guard let checkpoint = try store.latestTrainingCheckpoint() else { return false }
        let state = try CheckpointState.parse(checkpoint.state)
        try trainer.restoreState(step: checkpoint.step, optimizerSteps: state.optimizerSteps, tensors: checkpoint.tensors)
        return true
    }

    func latestDescription() -> String? {
        ((try? store.trainingCheckpointStep()) ?? nil).map { "step \($0), kept in the state file" }
    }
}

/// `train_log.jsonl` rows in the run's SQLite state file; written out as the file at the end.
final class StateFileTrainLog: TrainLog {
    let store: RunStore

    init(store: RunStore) { self.store = store }

    func append(step: Int, kind: String, row: String) throws { try store.putTrainLog(step: step, kind: kind, row: row) }
    func truncate(after step: Int) throws { try store.truncateTrainLog(after: step) }
    func rows() throws -> [String] { try store.trainLog() }
}
