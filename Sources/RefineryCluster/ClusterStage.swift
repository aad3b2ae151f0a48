import Foundation

/// A worker as the coordinator knows it while it is connected.
public final class ConnectedWorker {
    public let id: String
    let routingID: [UInt8]
    public var host: String
    public var slots: Int
    public var modelHash: String
    /// Tasks leased to this worker and not yet answered.
    public var held: Set<TaskID> = []
    public var lastHeard: Double
    var lastSent: Double = 0
    /// Parameter version this worker holds (training).
    public var parameterVersion: UInt64?

    init(id: String, routingID: [UInt8], host: String, slots: Int, modelHash: String, now: Double) {
        self.id = id
        self.routingID = routingID
        self.host = host
        self.slots = slots
        self.modelHash = modelHash
        lastHeard = now
    }
}

/// A result a worker sent, checked on decode.
public enum StageResult: Sendable {
    case generation(Refinery_Cluster_GenerateResult)
    case gradient(Refinery_Cluster_GradientResult)
    case call(Refinery_Cluster_CallResult)
}

/// What a stage says about a result it was given.
public enum ResultVerdict: Sendable {
    /// Stored (or already stored): acknowledge it so the worker drops it from its spool.
    case stored
    /// Stale or unusable: acknowledge it too (the worker must not send it again).
    case dropped(String)
    /// The run cannot go on (bad API key, exhausted quota…): stop every process with this reason.
    case stopRun(String)
}

/// A phase of the run whose work the coordinator hands to workers as leased tasks. The
/// coordinator owns the leases and checks that a result comes from a worker that was granted
/// its lease; the stage owns the queue of tasks and what results mean.
public protocol ClusterStage: AnyObject {
    /// "generate" or "train".
    var name: String { get }
    /// All tasks are answered.
    var isComplete: Bool { get }
    /// How many tasks of this stage `worker` may hold at once (0: it cannot take them).
    func capacity(of worker: ConnectedWorker) -> Int
    /// The next task `worker` should get, taken off the queue; nil when none is ready.
    func takeTask(for worker: ConnectedWorker, now: Double) throws -> TaskID?
    /// Messages to send for a granted lease (the task, and anything the worker needs first).
    func messages(for lease: Lease, worker: ConnectedWorker) throws -> [Refinery_Cluster_Envelope.OneOf_Body]
    /// Puts a task whose lease ended without a result back in the queue.
    func requeue(_ task: TaskID)
    /// Whether `task` still waits for a result (so a lease on it may be re-adopted).
    func isOpen(_ task: TaskID) -> Bool
    /// Handles a result from a worker that was granted `lease`; `isCurrent`: it is the task's
    /// newest lease and that worker still holds it.
    func accept(_ result: StageResult, lease: Lease, isCurrent: Bool, from worker: ConnectedWorker) throws -> ResultVerdict
    /// Called on every turn of the coordinator's loop (progress, step completion…).
    func tick(now: Double) throws
    /// How long a lease lasts without a result before the task goes back to the queue.
    var leaseTimeout: Double { get }
    /// A line for the progress display.
    var progressLine: String { get }
    /// Tasks finished and in all (chunks, calls, steps), for the progress bar.
    var progress: (done: Int, total: Int) { get }
}
