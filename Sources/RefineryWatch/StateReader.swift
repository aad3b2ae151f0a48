import Foundation
import RefineryStore

/// Reads a run's state file for the dashboard on a thread of its own, through one read-only
/// connection opened on first use and kept. A request that waits on SQLite (the run holding a
/// lock, a slow disk) waits there, never on a thread of Swift's cooperative pool — which has one
/// thread per core and is shared with the run — and requests never open connections of their own.
final class StateReader: @unchecked Sendable {
    let path: String
    private let queue = DispatchQueue(label: "refinery-dashboard-state")
    /// Only touched on `queue`.
    private var store: RunStore?

    init(path: String) {
        self.path = path
    }

    /// Runs `body` on the reader's thread with the open store.
    func read<Value: Sendable>(_ body: @escaping @Sendable (RunStore) throws -> Value) async throws -> Value {
        try await withCheckedThrowingContinuation { continuation in
            queue.async {
                continuation.resume(with: Result { try body(self.openStore()) })
            }
        }
    }

    /// Whether the run has finished setting up its state file (`RunStore.isReady`), asked on the reader's thread.
    func isReady() async -> Bool {
        await withCheckedContinuation { continuation in
            queue.async { continuation.resume(returning: RunStore.isReady(path: self.path)) }
        }
    }

    private func openStore() throws -> RunStore {
        if let store { return store }
        let opened = try RunStore(path: path, readOnly: true)
        store = opened
        return opened
    }
}
