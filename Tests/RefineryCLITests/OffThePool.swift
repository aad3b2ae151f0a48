import Dispatch

/// Runs the blocking body of a test (subprocess waits, polling sleeps) on a thread outside Swift's
/// cooperative pool while staying inside the test's own task, so `#expect` failures are still
/// recorded against the test. On a 2-core machine the cooperative pool has two threads: two CLI
/// tests waiting for minutes on subprocesses would otherwise starve every async test beside them
/// (an in-process mock LLM server whose handlers never get a thread, a request that times out).
func offThePool<T>(_ body: () throws -> T) async throws -> T {
    try await withTaskExecutorPreference(OwnQueueExecutor()) { try body() }
}

/// A task executor that runs its jobs on a serial queue of its own (an overcommitting dispatch
/// thread, never one of the cooperative pool's).
final class OwnQueueExecutor: TaskExecutor {
    private let queue = DispatchQueue(label: "refinery.tests.blocking")

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        queue.async { job.runSynchronously(on: self.asUnownedTaskExecutor()) }
    }
}
