import CZeroMQ
import Foundation
import RefineryStore

/// A cluster failure; the message says what happened and what to do.
public struct ClusterError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// How a coordinator listens and talks to its workers.
public struct CoordinatorOptions: Sendable {
    /// ZeroMQ endpoint to bind, e.g. `tcp://127.0.0.1:5555` or `tcp://*:5555`.
    public var listen: String
    /// Seconds between heartbeats, both ways (DESIGN §4).
    public var heartbeatInterval: Double = 1
    /// Heartbeats missed before a worker counts as dead.
    public var liveness = 3
    /// After a restart, leases recorded as held wait this long for their worker to come back
    /// before the tasks are handed to others (so an answer in flight is not paid for twice).
    public var restartGrace: Double = 6
    /// CURVE server keys and the allowlist of worker keys; nil: plain TCP.
    public var security: CurveServerSecurity?
    /// Generation settings for workers (nil: the run does not generate).
    public var generationSettings: GenerationWireSettings?
    /// Content hash of the base model that gradient tasks need ("" when the run does not train).
    public var modelHash = ""
    /// API key sent to workers that have none; only ever over CURVE-encrypted links.
    public var apiKeyForWorkers: String?
    /// Folder of the base model, served to workers started with `--fetch-model`.
    public var modelDirectory: String?

    public init(listen: String) { self.listen = listen }
}

/// The coordinator's side of the cluster: one ROUTER socket, the connected workers, task
/// leases persisted in SQLite, heartbeats and dead-worker detection. Stages (generation,
/// training) supply the tasks and interpret the results. Single-threaded: everything happens
/// on the thread that calls `run`.
public final class Coordinator {
    public let store: RunStore
    public let options: CoordinatorOptions
    private let context: ZMQContext
    private let socket: ZMQSocket
    private var authenticator: ZAPAuthenticator?
    /// The endpoint actually bound.
    public let endpoint: String
    public private(set) var workers: [String: ConnectedWorker] = [:]
    /// Newest epoch, holder and expiry of every task leased in this run.
    private var leases: [String: LeaseRecord] = [:]
    private let runID: String
    private var stageName = "idle"
    private var lastWorkerSave = 0.0
    private var lastProgress = 0.0
    private let modelServer: ModelFileServer?
    /// Training settings for workers; set before the training stage.
    public var trainingSettings: TrainingWireSettings?
    /// Progress and events, one line at a time (the command prints them to standard error).
    public var report: (String) -> Void = { _ in }
    private let cancellation = CancellationFlag()

    public init(store: RunStore, options: CoordinatorOptions) throws {
        self.store = store
        self.options = options
        context = try ZMQContext()
        if let security = options.security { authenticator = try ZAPAuthenticator(context: context, allowed: security.allowedWorkerKeys) }
        socket = try ZMQSocket(context: context, type: .router)
        try socket.setOption(ZMQ_ROUTER_MANDATORY, 1)
        try socket.setOption(ZMQ_ROUTER_HANDOVER, 1)
        try socket.setOption(ZMQ_SNDHWM, 0)
        try socket.setOption(ZMQ_RCVHWM, 0)
        if let security = options.security {
            try socket.setOption(ZMQ_CURVE_SERVER, 1)
            try socket.setOption(ZMQ_CURVE_SECRETKEY, string: security.serverSecretKey)
            try socket.setOption(ZMQ_ZAP_DOMAIN, string: ZAPAuthenticator.domain)
        }
        try socket.bind(options.listen)
        endpoint = try socket.lastEndpoint()
        // A state file that cannot be read stops the coordinator (never a fresh run id over it).
        runID = try store.meta("run_id") ?? UUID().uuidString
        try store.setMeta("run_id", runID)
        try store.removeMeta("stopped_reason")  // a new attempt: an earlier stop's reason no longer holds
        try store.forgetWorkers()
        modelServer = options.modelDirectory.map { ModelFileServer(directory: $0) }
        // Leases held when the previous coordinator stopped: their workers get `restartGrace`
        // seconds to come back and claim them.
        let now = Self.now()
        for lease in try store.leases() {
            var record = lease
            if record.workerID != nil { record.expiresAt = now + options.restartGrace }
            leases[lease.taskID] = record
        }
    }

    deinit {
        socket.close()
        authenticator?.stop()
    }

    static func now() -> Double { Date().timeIntervalSince1970 }

    // MARK: Running a stage

    /// Hands out `stage`'s tasks until all are answered. Throws when a result stops the run
    /// (after telling every worker to stop).
    public func run(_ stage: ClusterStage) throws {
        stageName = stage.name
        try store.setMeta("stage", stage.name)
        // Workers that joined in an earlier stage learn this one's settings.
        for worker in workers.values { send(.welcome(welcomeMessage()), to: worker) }
        while !stage.isComplete {
            if cancellation.isSet { throw ClusterError("the coordinator was cancelled") }
            if let reason = stopCheck() { try stopRun(reason) }
            if try socket.waitForMessage(milliseconds: 20) {
                while let frames = try socket.receive() {
                    if let reason = try handle(frames, stage: stage) { try stopRun(reason) }
                }
            }
            let now = Self.now()
            try expireLeases(stage: stage, now: now)
            try dropDeadWorkers(stage: stage, now: now)
            try dispatch(stage: stage, now: now)
            sendHeartbeats(now: now)
            do { try stage.tick(now: now) } catch let error as ClusterError { try stopRun(error.message) }
            if now - lastWorkerSave >= 2 {
                lastWorkerSave = now
                try store.updateWorkers(lastSeen: workers.mapValues(\.lastHeard), gone: [])
            }
            if now - lastProgress >= 1 {
                lastProgress = now
                report("[\(stage.name)] \(stage.progressLine); \(workers.count) worker\(workers.count == 1 ? "" : "s")")
            }
        }
        report("[\(stage.name)] \(stage.progressLine)")
    }

    /// Asked on every turn of the loop; a reason stops the run (e.g. `run` lost all its worker processes).
    public var stopCheck: () -> String? = { nil }

    /// Makes `run` end (from any thread) with an error at its next turn.
    public func cancel() { cancellation.set() }

    /// Tells every worker the run is over and gives the messages a moment to leave.
    public func finish(reason: String, failed: Bool = false) {
        try? store.setMeta("stage", failed ? "stopped" : "done")
        var stop = Refinery_Cluster_Stop()
        stop.reason = reason
        stop.failed = failed
        for worker in workers.values { send(.stop(stop), to: worker) }
        try? store.updateWorkers(lastSeen: [:], gone: Array(workers.keys))
        // Answer stragglers for a little while so that every worker hears the news.
        stageName = failed ? "stopped" : "done"
        let end = Self.now() + 0.3
        while Self.now() < end {
            if (try? socket.waitForMessage(milliseconds: 20)) == true {
                while let frames = try? socket.receive() { _ = try? handle(frames, stage: nil) }
            }
        }
    }

    private func stopRun(_ reason: String) throws -> Never {
        try? store.setMeta("stopped_reason", reason)
        finish(reason: reason, failed: true)
        throw ClusterError(reason)
    }

    // MARK: Messages

    /// Handles one incoming message; returns a reason when the run must stop.
    private func handle(_ frames: [[UInt8]], stage: ClusterStage?) throws -> String? {
        guard frames.count == 2, let envelope = Wire.decode(frames[1]) else { return nil }
        let routingID = frames[0]
        let workerID = String(decoding: routingID, as: UTF8.self)
        let now = Self.now()
        if case let .hello(hello)? = envelope.body {
            try welcome(hello, version: envelope.protocolVersion, routingID: routingID, stage: stage, now: now)
            return nil
        }
        guard let worker = workers[workerID] else {
            // A worker from before a restart (or after a cut link): it must introduce itself again.
            var heartbeat = Refinery_Cluster_Heartbeat()
            heartbeat.helloRequired = true
            if let bytes = try? Wire.encode(.heartbeat(heartbeat)) { _ = try? socket.send([routingID, bytes]) }
            return nil
        }
        worker.lastHeard = now
        switch envelope.body {
        case .generateResult(let result)?:
            return try handleResult(.generateResult(result), lease: result.lease, worker: worker, stage: stage)
        case .gradientResult(let result)?:
            return try handleResult(.gradientResult(result), lease: result.lease, worker: worker, stage: stage)
        case .modelFileRequest(let request)?:
            if let modelServer { send(.modelFileChunk(modelServer.chunk(for: request)), to: worker) }
        default:
            break
        }
        return nil
    }

    private func welcome(_ hello: Refinery_Cluster_Hello, version: UInt32, routingID: [UInt8], stage: ClusterStage?, now: Double) throws {
        func refuse(_ reason: String) {
            var refused = Refinery_Cluster_Refused()
            refused.reason = reason
            if let bytes = try? Wire.encode(.refused(refused)) { _ = try? socket.send([routingID, bytes]) }
            report("[cluster] refused worker \(hello.workerID)@\(hello.host): \(reason)")
        }
        guard version == Wire.protocolVersion else {
            return refuse("protocol version \(version) is not this coordinator's \(Wire.protocolVersion); run the same Refinery release on every machine")
        }
        guard String(decoding: routingID, as: UTF8.self) == hello.workerID, !hello.workerID.isEmpty else {
            return refuse("the worker's routing id does not match its hello")
        }
        if !options.modelHash.isEmpty && !hello.modelHash.isEmpty && hello.modelHash != options.modelHash {
            return refuse("its base model (content hash \(hello.modelHash)) differs from the coordinator's (\(options.modelHash)); give --model the same model folder, or start the worker with --fetch-model")
        }
        let known = workers[hello.workerID]
        let worker = known ?? ConnectedWorker(id: hello.workerID, routingID: routingID, host: hello.host, slots: Int(max(1, hello.slots)),
                                              modelHash: hello.modelHash, now: now)
        worker.lastHeard = now
        worker.host = hello.host
        worker.slots = Int(max(1, hello.slots))
        worker.modelHash = hello.modelHash
        worker.parameterVersion = nil
        workers[worker.id] = worker
        try store.registerWorker(id: worker.id, host: worker.host, slots: worker.slots, at: now)
        if known == nil { report("[cluster] worker \(worker.id) joined from \(worker.host) with \(worker.slots) slots") }
        // Re-adopt the leases it still works on, if they are still its own.
        var adopted: [String] = []
        for held in hello.held {
            guard var lease = leases[held.taskID], lease.epoch == Int64(held.epoch), stage?.isOpen(held.taskID) ?? false else { continue }
            if let holder = lease.workerID, holder != worker.id { workers[holder]?.held.remove(held.taskID) }
            lease.workerID = worker.id
            lease.expiresAt = now + (stage?.leaseTimeout ?? 600)
            leases[held.taskID] = lease
            worker.held.insert(held.taskID)
            adopted.append(held.taskID)
        }
        try store.extendLeases(workerID: worker.id, taskIDs: adopted, expiresAt: now + (stage?.leaseTimeout ?? 600))
        // Tasks it held before and does not hold now: either answered (the results follow from its
        // spool right after the welcome) or lost with a restarted process. Give them a short grace.
        let grace = now + options.heartbeatInterval * Double(options.liveness)
        for taskID in worker.held.subtracting(adopted) where leases[taskID]?.workerID == worker.id {
            let current = leases[taskID]?.expiresAt ?? grace
            leases[taskID]?.expiresAt = min(current, grace)
        }
        send(.welcome(welcomeMessage()), to: worker)
        if stageName == "done" || stageName == "stopped" {
            var stop = Refinery_Cluster_Stop()
            stop.reason = stageName == "done" ? "the run is complete" : "the run stopped"
            stop.failed = stageName == "stopped"
            send(.stop(stop), to: worker)
        }
    }

    private func welcomeMessage() -> Refinery_Cluster_Welcome {
        var welcome = Refinery_Cluster_Welcome()
        welcome.runID = runID
        welcome.heartbeatMs = UInt32(options.heartbeatInterval * 1000)
        welcome.stage = stageName
        welcome.generationSettingsJson = options.generationSettings?.json ?? ""
        welcome.trainingSettingsJson = trainingSettings?.json ?? ""
        welcome.modelHash = options.modelHash
        // The API key travels only over CURVE-encrypted links.
        if options.security != nil, let key = options.apiKeyForWorkers { welcome.apiKey = key }
        return welcome
    }

    private func handleResult(_ body: Refinery_Cluster_Envelope.OneOf_Body, lease: Refinery_Cluster_Lease, worker: ConnectedWorker,
                              stage: ClusterStage?) throws -> String? {
        let taskID = lease.taskID
        let epoch = Int64(lease.epoch)
        let current = leases[taskID]
        var verdict = ResultVerdict.dropped("no stage is running")
        if let stage { verdict = try stage.accept(body, taskID: taskID, epoch: epoch, currentEpoch: current?.epoch, from: worker) }
        worker.held.remove(taskID)
        if case .stored = verdict, var record = current {
            // The task is answered: whoever else holds it is released from it.
            if let holder = record.workerID, holder != worker.id { workers[holder]?.held.remove(taskID) }
            record.workerID = nil
            record.expiresAt = nil
            leases[taskID] = record
        } else if current?.workerID == worker.id, stage?.isOpen(taskID) == true {
            // Its holder answered with something unusable: hand the task out again.
            leases[taskID]?.workerID = nil
            leases[taskID]?.expiresAt = nil
            try store.releaseLeases([taskID])
            stage?.requeue(taskID)
        }
        var ack = Refinery_Cluster_ResultAck()
        ack.lease = lease
        send(.resultAck(ack), to: worker)
        if case let .stopRun(reason) = verdict { return reason }
        return nil
    }

    // MARK: Leases and workers

    /// Hands out tasks round-robin, one per worker per round, up to each worker's capacity.
    private func dispatch(stage: ClusterStage, now: Double) throws {
        let order = workers.values.sorted { $0.id < $1.id }
        var gave = true
        while gave {
            gave = false
            for worker in order where worker.held.count < stage.capacity(of: worker) {
                guard let taskID = try stage.takeTask(for: worker, now: now) else { return }
                // Still held by a worker from before a restart: it goes back to the queue when
                // that lease ends without a result.
                if leases[taskID]?.workerID != nil { gave = true; continue }
                let lease = try store.grantLease(taskID: taskID, workerID: worker.id, expiresAt: now + stage.leaseTimeout)
                leases[taskID] = lease
                worker.held.insert(taskID)
                for body in try stage.messages(for: taskID, epoch: lease.epoch, worker: worker) { send(body, to: worker) }
                gave = true
            }
        }
    }

    private func expireLeases(stage: ClusterStage, now: Double) throws {
        var expired: [String] = []
        for (taskID, lease) in leases where lease.workerID != nil && (lease.expiresAt ?? .infinity) < now {
            expired.append(taskID)
        }
        guard !expired.isEmpty else { return }
        for taskID in expired.sorted() {
            if let holder = leases[taskID]?.workerID { workers[holder]?.held.remove(taskID) }
            leases[taskID]?.workerID = nil
            leases[taskID]?.expiresAt = nil
            if stage.isOpen(taskID) { stage.requeue(taskID) }
        }
        try store.releaseLeases(expired)
        report("[cluster] \(expired.count) lease\(expired.count == 1 ? "" : "s") expired; the tasks go back to the queue")
    }

    private func dropDeadWorkers(stage: ClusterStage, now: Double) throws {
        let limit = options.heartbeatInterval * Double(options.liveness)
        for worker in workers.values where now - worker.lastHeard > limit {
            try drop(worker, stage: stage, reason: "missed \(options.liveness) heartbeats")
        }
    }

    private func drop(_ worker: ConnectedWorker, stage: ClusterStage?, reason: String) throws {
        workers[worker.id] = nil
        let released = worker.held.sorted()
        for taskID in released where leases[taskID]?.workerID == worker.id {
            leases[taskID]?.workerID = nil
            leases[taskID]?.expiresAt = nil
            if stage?.isOpen(taskID) == true { stage?.requeue(taskID) }
        }
        try store.releaseLeases(released)
        try store.updateWorkers(lastSeen: [:], gone: [worker.id])
        report("[cluster] worker \(worker.id) lost (\(reason)); \(released.count) task\(released.count == 1 ? "" : "s") back in the queue")
    }

    private func sendHeartbeats(now: Double) {
        for worker in workers.values where now - worker.lastSent >= options.heartbeatInterval {
            send(.heartbeat(Refinery_Cluster_Heartbeat()), to: worker)
        }
    }

    /// Sends to a connected worker; a worker that cannot be reached is left to the liveness check.
    func send(_ body: Refinery_Cluster_Envelope.OneOf_Body, to worker: ConnectedWorker) {
        guard let bytes = try? Wire.encode(body) else { return }
        if (try? socket.send([worker.routingID, bytes])) == true { worker.lastSent = Self.now() }
    }
}

/// A flag set from one thread and read by another.
final class CancellationFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false

    var isSet: Bool {
        lock.lock()
        defer { lock.unlock() }
        return value
    }

    func set() {
        lock.lock()
        value = true
        lock.unlock()
    }
}
