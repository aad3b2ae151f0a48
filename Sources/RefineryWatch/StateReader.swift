import Foundation
import RefineryStore

/// Reads a run's state file for the dashboard on a thread of its own, through one read-only
/// connection opened on first use and kept. A request that waits on SQLite (the run holding a
/// lock, a slow disk) waits there, never on a thread of Swift's cooperative pool — which has one
/// thread per core and is shared with the run — and requests never open connections of their own.
/// A file is read only once its creator has set it up (`RunStore.isReady`, asked until it holds):
/// a read racing the run's migrations would find tables missing. A state file replaced by a new
/// one (a run started over in the same place) is opened, and waited for, again.
final class StateReader: @unchecked Sendable {
    let path: String
    private let queue = DispatchQueue(label: "refinery-dashboard-state")
    /// The open store and the file it was opened on; only touched on `queue`.
    private var store: (store: RunStore, file: FileIdentity)?

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

    private func openStore() throws -> RunStore {
        guard let file = FileIdentity(path: path) else { throw StateNotReady(reason: "the run has not created its state file yet") }
        if let store, store.file == file { return store.store }
        guard RunStore.isReady(path: path) else { throw StateNotReady(reason: "the run is still setting up its state file") }
        let opened = try RunStore(path: path, readOnly: true)
        store = (opened, file)
        return opened
    }
}

/// A read asked for before the state file exists or while its creator is still setting it up.
struct StateNotReady: Error {
    let reason: String
}

/// Which file a path names (device and inode), to notice a file replaced under the same name.
struct FileIdentity: Equatable {
    let device: UInt64
    let inode: UInt64

    init?(path: String) {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        device = UInt64(info.st_dev)
        inode = UInt64(info.st_ino)
    }
}
