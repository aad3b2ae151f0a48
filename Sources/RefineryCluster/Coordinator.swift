import Foundation
import RefineryCore
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
    /// before the tasks are handed to others, so an answer in flight is not paid for twice. It
    /// outlasts a worker's longest reconnect backoff (32 s) plus its liveness window.
    public var restartGrace: Double = 45
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

/// The coordinator's side of the cluster: admission, leases persisted in SQLite, dispatch,
/// results, heartbeats and dead-worker detection. It knows nothing of sockets (a
/// `CoordinatorTransport` carries the bytes) and reads time from a `ClusterClock`, so the same
/// core runs on ZeroMQ in production and in memory with a manual clock in tests. Stages
/// (generation, training) supply the tasks and interpret the results. Single-threaded:
/// everything happens on the thread that calls `run` or `turn`.
public final class Coordinator {
    public let store: RunStore
    public let options: CoordinatorOptions
    private let transport: CoordinatorTransport
    private let clock: ClusterClock
    /// The endpoint actually bound.
    public var endpoint: String { transport.endpoint }
    public private(set) var workers: [String: ConnectedWorker] = [:]
    /// Newest epoch, holder and expiry of every task leased in this run.
    private var leases: [TaskID: LeaseRecord] = [:]
    private let runID: String
    private var stageName = "idle"
    private var lastWorkerSave = 0.0
    private var lastProgress = 0.0
    private let modelServer: ModelFileServer?
    /// Training settings for workers; set before the training stage.
    public var trainingSettings: TrainingWireSettings?
    /// Progress and events, one line at a time (the command prints them to standard error).
    public var report: (String) -> Void = { _ in }
    /// Where events go (worker joined or lost, lease expired, request failed, stage finished);
    /// without a receiver their text lines go to `report`.
    public var onEvent: ((RunEvent) -> Void)?

    /// Receives the status line (with its progress bar) about once a second while a stage runs,
    /// and nil when the stage ends; without a receiver the lines go to `report`.
    public var onStatus: ((String?) -> Void)?

    private func emit(_ event: RunEvent) {
        if let onEvent { onEvent(event) } else { report(event.line) }
    }
    /// Messages refused since the start (a hostile or broken peer); readable from any thread.
    public var refusedMessages: Int { refusals.value }
    private let refusals = Counter()
    private let cancellation = CancellationFlag()

    /// A coordinator listening with ZeroMQ on `options.listen`, on the wall clock.
    public convenience init(store: RunStore, options: CoordinatorOptions) throws {
        try self.init(store: store, options: options, transport: ZMQRouterTransport(listen: options.listen, security: options.security),
                      clock: SystemClock())
    }

    /// A coordinator on any transport and clock. A state file that cannot be read stops it with
    /// the reason.
    public init(store: RunStore, options: CoordinatorOptions, transport: CoordinatorTransport, clock: ClusterClock) throws {
        guard options.heartbeatInterval.isFinite, (0.001...600).contains(options.heartbeatInterval), options.liveness >= 1,
              options.restartGrace.isFinite, options.restartGrace >= 0 else {
            throw ClusterError("the heartbeat must be between 0.001 and 600 seconds (got \(options.heartbeatInterval)), the liveness at least 1 (got \(options.liveness)) and the restart grace ≥ 0 s (got \(options.restartGrace))")
        }
        self.store = store
        self.options = options
        self.transport = transport
        self.clock = clock
        runID = try store.meta("run_id") ?? UUID().uuidString
        try store.setMeta("run_id", runID)
        try store.removeMeta("stopped_reason")  // a new attempt: an earlier stop's reason no longer holds
        try store.forgetWorkers()
        modelServer = options.modelDirectory.map { ModelFileServer(directory: $0) }
        // Leases held when the previous coordinator stopped: their workers get `restartGrace`
        // seconds to come back and claim them.
        let now = clock.now
        for lease in try store.leases() {
            guard let task = TaskID(key: lease.taskID) else { continue }
            var record = lease
            if record.workerID != nil { record.expiresAt = now + options.restartGrace }
            leases[task] = record
        }
    }

    // MARK: Running a stage

    /// Hands out `stage`'s tasks until all are answered. Throws when a result stops the run
    /// (after telling every worker to stop).
    public func run(_ stage: ClusterStage) throws {
        try begin(stage)
        while !stage.isComplete {
            if cancellation.isSet { throw ClusterError("the coordinator was cancelled") }
            if let reason = stopCheck() { try stopRun(reason) }
            try turn(stage, waitingMilliseconds: 20)
        }
        onStatus?(nil)
        emit(RunEvent(source: stage.name, name: "stage_finished", message: stage.progressLine, fields: [("stage", stage.name)]))
    }

    /// Makes `stage` the current one: workers that joined earlier learn its settings, and
    /// leases of tasks it does not need (answered, or of another stage) are let go — except LLM
    /// calls, which a later round may still ask for: a worker holding one keeps it until it
    /// answers (the answer is stored whatever stage runs then), the lease ends or the worker is lost.
    public func begin(_ stage: ClusterStage) throws {
        stageName = stage.name
        try store.setMeta("stage", stage.name)
        let idle = leases.filter { record in
            guard record.value.workerID != nil, !stage.isOpen(record.key) else { return false }
            if case .call = record.key { return false }
            return true
        }.map(\.key)
        for task in idle { release(task) }
        try store.releaseLeases(idle.map(\.key))
        for worker in workers.values { send(.welcome(welcomeMessage()), to: worker) }
    }

    /// One turn of the loop: take the messages that arrived (waiting up to `milliseconds`),
    /// end expired leases and dead workers, hand out tasks, heartbeat, let the stage advance.
    public func turn(_ stage: ClusterStage, waitingMilliseconds milliseconds: Int = 0) throws {
        for message in try transport.receive(waitingMilliseconds: milliseconds) {
            if let reason = try handle(message, stage: stage) { try stopRun(reason) }
        }
        let now = clock.now
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
            let line = "[\(stage.name)] \(stage.progressLine); \(workers.count) worker\(workers.count == 1 ? "" : "s")"
            if let onStatus {
                let (done, total) = stage.progress
                onStatus("[\(stage.name)] " + ProgressBar.render(done: done, total: total) + " " + stage.progressLine
                         + "; \(workers.count) worker\(workers.count == 1 ? "" : "s")")
            } else {
                report(line)
            }
        }
    }

    /// Asked on every turn of the loop; a reason stops the run (e.g. `run` lost all its worker processes).
    public var stopCheck: () -> String? = { nil }

    /// Makes `run` end (from any thread) with an error at its next turn.
    public func cancel() { cancellation.set() }

    /// The lease of `task` as the coordinator holds it now.
    public func lease(of task: TaskID) -> LeaseRecord? { leases[task] }

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
        let end = Date().addingTimeInterval(0.3)
        while Date() < end {
            for message in (try? transport.receive(waitingMilliseconds: 20)) ?? [] { _ = try? handle(message, stage: nil) }
        }
    }

    private func stopRun(_ reason: String) throws -> Never {
        try? store.setMeta("stopped_reason", reason)
        finish(reason: reason, failed: true)
        throw ClusterError(reason)
    }

    // MARK: Messages

    /// Handles one incoming message; returns a reason when the run must stop. A message that
    /// fails its checks is refused with the reason in the log, and changes nothing.
    private func handle(_ message: PeerMessage, stage: ClusterStage?) throws -> String? {
        let workerID = String(decoding: message.peer, as: UTF8.self)
        let decoded: WorkerMessage
        do { decoded = try Wire.fromWorker(message.bytes) } catch {
            refuse(message: error, from: workerID)
            return nil
        }
        let now = clock.now
        if case let .hello(hello) = decoded {
            try welcome(hello, routingID: message.peer, stage: stage, now: now)
            return nil
        }
        guard let worker = workers[workerID], worker.routingID == message.peer else {
            // A worker from before a restart (or after a cut link): it must introduce itself again.
            var heartbeat = Refinery_Cluster_Heartbeat()
            heartbeat.helloRequired = true
            if let bytes = try? Wire.encode(.heartbeat(heartbeat)) { _ = transport.send(bytes, to: message.peer) }
            return nil
        }
        worker.lastHeard = now
        switch decoded {
        case let .generateResult(lease, result):
            return try handleResult(.generation(result), lease: lease, worker: worker, stage: stage)
        case let .gradientResult(lease, result):
            return try handleResult(.gradient(result), lease: lease, worker: worker, stage: stage)
        case let .callResult(lease, result):
            return try handleResult(.call(result), lease: lease, worker: worker, stage: stage)
        case let .modelFileRequest(name, offset):
            if let modelServer { send(.modelFileChunk(modelServer.chunk(name: name, offset: offset)), to: worker) }
        case .hello, .heartbeat, .taskRequest:
            break
        }
        return nil
    }

    private func refuse(message reason: WireRefusal, from workerID: String) {
        refusals.increment()
        emit(RunEvent(source: "cluster", name: "message_refused", level: .warning,
                      message: "refused a message from \(workerID.prefix(80)): \(reason.reason)",
                      fields: [("worker", String(workerID.prefix(80))), ("reason", reason.reason)]))
    }

    private func welcome(_ hello: WorkerHello, routingID: [UInt8], stage: ClusterStage?, now: Double) throws {
        func refuse(_ reason: String) {
            var refused = Refinery_Cluster_Refused()
            refused.reason = reason
            if let bytes = try? Wire.encode(.refused(refused)) { _ = transport.send(bytes, to: routingID) }
            refusals.increment()
            emit(RunEvent(source: "cluster", name: "worker_refused", level: .warning, message: "refused worker \(hello.workerID)@\(hello.host): \(reason)",
                          fields: [("worker", hello.workerID), ("host", hello.host), ("reason", reason)]))
        }
        guard hello.protocolVersion == Wire.protocolVersion else {
            return refuse("protocol version \(hello.protocolVersion) is not this coordinator's \(Wire.protocolVersion); run the same Refinery release on every machine")
        }
        guard String(decoding: routingID, as: UTF8.self) == hello.workerID else {
            return refuse("the worker's routing id does not match its hello")
        }
        if !options.modelHash.isEmpty && !hello.modelHash.isEmpty && hello.modelHash != options.modelHash {
            return refuse("its base model (content hash \(hello.modelHash)) differs from the coordinator's (\(options.modelHash)); give --model the same model folder, or start the worker with --fetch-model")
        }
        let known = workers[hello.workerID]
        let worker = known ?? ConnectedWorker(id: hello.workerID, routingID: routingID, host: hello.host, slots: hello.slots,
                                              modelHash: hello.modelHash, now: now)
        worker.lastHeard = now
        worker.host = hello.host
        worker.slots = hello.slots
        worker.modelHash = hello.modelHash
        worker.parameterVersion = nil
        workers[worker.id] = worker
        try store.registerWorker(id: worker.id, host: worker.host, slots: worker.slots, at: now)
        if known == nil {
            emit(RunEvent(source: "cluster", name: "worker_joined", message: "worker \(worker.id) joined from \(worker.host) with \(worker.slots) slots",
                          fields: [("worker", worker.id), ("host", worker.host), ("slots", String(worker.slots))]))
        }
        // Re-adopt the leases it still works on, and those whose results wait in its spool (they
        // follow right after the welcome), if they are still its own.
        var adopted: [TaskID] = []
        let timeout = stage?.leaseTimeout ?? 600
        for lease in hello.held + hello.answered {
            guard var record = leases[lease.task], record.epoch == lease.epoch, stage?.isOpen(lease.task) ?? false else { continue }
            guard try store.wasGranted(taskID: lease.task.key, epoch: lease.epoch, to: worker.id) else { continue }
            if let holder = record.workerID, holder != worker.id { workers[holder]?.held.remove(lease.task) }
            record.workerID = worker.id
            record.expiresAt = now + timeout
            leases[lease.task] = record
            worker.held.insert(lease.task)
            adopted.append(lease.task)
        }
        try store.extendLeases(workerID: worker.id, taskIDs: adopted.map(\.key), expiresAt: now + timeout)
        // Leases recorded as its own (also by a coordinator before a restart) that its hello does
        // not list were lost with a restarted process, or their task never reached it: a hello
        // lists everything a worker holds or has answered, so they go back to the queue after a
        // short grace instead of waiting out the restart grace.
        let grace = now + options.heartbeatInterval * Double(options.liveness)
        let listed = Set(adopted + (hello.held + hello.answered).map(\.task))
        for (task, record) in leases where record.workerID == worker.id && !listed.contains(task) {
            leases[task]?.expiresAt = min(record.expiresAt ?? grace, grace)
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
        welcome.heartbeatMs = UInt32(clamping: Int((options.heartbeatInterval * 1000).rounded()))
        welcome.stage = stageName
        if let generation = options.generationSettings { welcome.generation = generation.message }
        if let trainingSettings { welcome.training = trainingSettings.message }
        welcome.modelHash = options.modelHash
        // The API key travels only over CURVE-encrypted links.
        if options.security != nil, let key = options.apiKeyForWorkers { welcome.apiKey = key }
        return welcome
    }

    /// A result counts only if its sender was granted its lease: the current holder of the
    /// current epoch, or (generation, DESIGN §4) a holder of an earlier epoch whose chunk is
    /// still open. Anything else is refused and changes nothing.
    private func handleResult(_ result: StageResult, lease: Lease, worker: ConnectedWorker, stage: ClusterStage?) throws -> String? {
        let current = leases[lease.task]
        let isCurrent = current?.epoch == lease.epoch && current?.workerID == worker.id
        let wasGranted = try isCurrent || store.wasGranted(taskID: lease.task.key, epoch: lease.epoch, to: worker.id)
        guard wasGranted else {
            refusals.increment()
            emit(RunEvent(source: "cluster", name: "result_refused", level: .warning,
                          message: "refused a result for \(lease) from \(worker.id): that lease was never granted to it",
                          fields: [("worker", worker.id), ("task", lease.task.key), ("epoch", String(lease.epoch))]))
            return nil
        }
        var verdict = ResultVerdict.dropped("no stage is running")
        if let stage { verdict = try stage.accept(result, lease: lease, isCurrent: isCurrent, from: worker) }
        // An LLM call's answer is paid for: stored for the round that asks for it, whichever stage runs now.
        if case let .call(call) = result, !(stage is CallStage), try CallStage.commit(call, lease: lease, worker: worker, store: store) {
            verdict = .stored
        }
        worker.held.remove(lease.task)
        if case .stored = verdict {
            // The task is answered: whoever else holds it is released from it.
            if let holder = current?.workerID, holder != worker.id { workers[holder]?.held.remove(lease.task) }
            release(lease.task)
        } else if isCurrent, stage?.isOpen(lease.task) == true {
            // Its holder answered with something unusable: hand the task out again.
            release(lease.task)
            try store.releaseLeases([lease.task.key])
            stage?.requeue(lease.task)
        }
        if case let .dropped(reason) = verdict {
            emit(RunEvent(source: "cluster", name: "result_dropped", message: "dropped a result for \(lease) from \(worker.id): \(reason)",
                          fields: [("worker", worker.id), ("task", lease.task.key), ("reason", reason)]))
        }
        if case .stored = verdict, case let .generation(generated) = result { reportFailedRequests(generated, worker: worker) }
        if case .stored = verdict, case let .call(call) = result, call.outcome == "failed" {
            reportFailedCall(call, purpose: stage?.name ?? "curation", worker: worker)
        }
        var ack = Refinery_Cluster_ResultAck()
        ack.lease = lease.message
        send(.resultAck(ack), to: worker)
        if case let .stopRun(reason) = verdict { return reason }
        return nil
    }

    /// One event per failed request of a stored chunk: why it failed and whether another followed.
    private func reportFailedRequests(_ result: Refinery_Cluster_GenerateResult, worker: ConnectedWorker) {
        for (index, request) in result.requests.enumerated() where request.status == "failed" {
            let retried = index < result.requests.count - 1
            let errorClass = request.errorClass.isEmpty ? "other" : request.errorClass
            emit(RunEvent(source: "cluster", name: "request_failed", level: .warning,
                          message: "chunk \(result.chunkID) request \(index + 1) on \(worker.id) failed (\(errorClass): \(request.error.prefix(200)))"
                              + (retried ? "; retried" : "; the chunk " + result.outcome),
                          fields: [("chunk", String(result.chunkID)), ("worker", worker.id), ("attempt", String(index + 1)),
                                   ("error_class", errorClass), ("reason", String(request.error.prefix(500))), ("retried", String(retried))]))
        }
    }

    /// One event per curation call that failed for good on a worker (its retries spent): why.
    private func reportFailedCall(_ result: Refinery_Cluster_CallResult, purpose: String, worker: ConnectedWorker) {
        let errorClass = result.errorClass.isEmpty ? "other" : result.errorClass
        emit(RunEvent(source: "cluster", name: "call_failed", level: .warning,
                      message: "\(purpose) call \(result.callID) on \(worker.id) failed (\(errorClass): \(result.error.prefix(200)))",
                      fields: [("call", String(result.callID)), ("purpose", purpose), ("worker", worker.id), ("attempts", String(result.attempts)),
                               ("error_class", errorClass), ("reason", String(result.error.prefix(500)))]))
    }

    private func release(_ task: TaskID) {
        leases[task]?.workerID = nil
        leases[task]?.expiresAt = nil
    }

    // MARK: Leases and workers

    /// Hands out tasks round-robin, one per worker per round, up to each worker's capacity.
    private func dispatch(stage: ClusterStage, now: Double) throws {
        let order = workers.values.sorted { $0.id < $1.id }
        var gave = true
        while gave {
            gave = false
            for worker in order where worker.held.count < stage.capacity(of: worker) {
                guard let task = try stage.takeTask(for: worker, now: now) else { return }
                // Still held by a worker from before a restart: it goes back to the queue when
                // that lease ends without a result.
                if leases[task]?.workerID != nil { gave = true; continue }
                let record = try store.grantLease(taskID: task.key, workerID: worker.id, expiresAt: now + stage.leaseTimeout)
                leases[task] = record
                worker.held.insert(task)
                for body in try stage.messages(for: Lease(task: task, epoch: record.epoch), worker: worker) { send(body, to: worker) }
                gave = true
            }
        }
    }

    private func expireLeases(stage: ClusterStage, now: Double) throws {
        let expired = leases.filter { $0.value.workerID != nil && ($0.value.expiresAt ?? .infinity) < now }.map(\.key).sorted()
        guard !expired.isEmpty else { return }
        // Requeued highest first, so the lowest is handed out next.
        for task in expired.reversed() {
            if let holder = leases[task]?.workerID { workers[holder]?.held.remove(task) }
            release(task)
            if stage.isOpen(task) { stage.requeue(task) }
        }
        try store.releaseLeases(expired.map(\.key))
        for task in expired {
            emit(RunEvent(source: "cluster", name: "lease_expired", level: .warning, message: "the lease of \(task.key) expired; the task goes back to the queue",
                          fields: [("task", task.key)]))
        }
    }

    private func dropDeadWorkers(stage: ClusterStage, now: Double) throws {
        let limit = options.heartbeatInterval * Double(options.liveness)
        for worker in workers.values.sorted(by: { $0.id < $1.id }) where now - worker.lastHeard > limit {
            try drop(worker, stage: stage, reason: "missed \(options.liveness) heartbeats")
        }
    }

    private func drop(_ worker: ConnectedWorker, stage: ClusterStage?, reason: String) throws {
        workers[worker.id] = nil
        let released = worker.held.sorted()
        for task in released.reversed() where leases[task]?.workerID == worker.id {
            release(task)
            if stage?.isOpen(task) == true { stage?.requeue(task) }
        }
        try store.releaseLeases(released.map(\.key))
        try store.updateWorkers(lastSeen: [:], gone: [worker.id])
        emit(RunEvent(source: "cluster", name: "worker_lost", level: .warning,
                      message: "worker \(worker.id) lost (\(reason)); \(released.count) task\(released.count == 1 ? "" : "s") back in the queue",
                      fields: [("worker", worker.id), ("reason", reason), ("released", String(released.count))]))
    }

    private func sendHeartbeats(now: Double) {
        for worker in workers.values where now - worker.lastSent >= options.heartbeatInterval {
            send(.heartbeat(Refinery_Cluster_Heartbeat()), to: worker)
        }
    }

    /// Sends to a connected worker; a worker that cannot be reached is left to the liveness check.
    func send(_ body: Refinery_Cluster_Envelope.OneOf_Body, to worker: ConnectedWorker) {
        guard let bytes = try? Wire.encode(body) else { return }
        if transport.send(bytes, to: worker.routingID) { worker.lastSent = clock.now }
    }
}
