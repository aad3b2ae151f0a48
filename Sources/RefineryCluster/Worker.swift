import CZeroMQ
import Foundation
import RefineryLLM
import RefineryModel

/// How a worker reaches its coordinator and what it offers.
public struct WorkerOptions: Sendable {
    /// The coordinator's endpoint, e.g. `tcp://10.0.0.5:5555`.
    public var coordinator: String
    /// LLM calls in flight at once (DESIGN §4: 4).
    public var slots = 4
    /// Stable for this process; the coordinator re-adopts its leases after a reconnect.
    public var workerID = "\(ProcessInfo.processInfo.hostName)-\(getpid())-\(String(UInt32.random(in: 0...UInt32.max), radix: 16))"
    public var host = ProcessInfo.processInfo.hostName
    /// Base model folder for gradient tasks (nil: generation only, unless `fetchModel`).
    public var modelDirectory: String?
    /// Download the coordinator's model into this folder before taking gradient tasks.
    public var fetchModelInto: String?
    /// Environment variable with the LLM API key (overrides the run's `api_key_env`).
    public var apiKeyEnv: String?
    public var security: CurveClientSecurity?
    /// Heartbeats missed before the coordinator counts as gone (then reconnect with backoff 1 s → 32 s).
    public var liveness = 3
    /// The most memory this worker may use (nil: what the machine has available); a training
    /// stage whose memory plan exceeds it is declined before the model is loaded.
    public var memoryLimit: Int64?
    /// Take training tasks even when the memory plan says they will not fit.
    public var ignoreMemoryPlan = false

    public init(coordinator: String) { self.coordinator = coordinator }
}

/// The API key the coordinator sent with the run's generation settings, for calls to that endpoint.
final class SentKey: @unchecked Sendable {
    private let lock = NSLock()
    private var value: (key: String, baseURL: String)?

    func set(_ key: String?, baseURL: String) {
        lock.lock()
        value = key.map { ($0, LLMEndpoint(baseURL: baseURL, apiKey: nil).baseURL) }
        lock.unlock()
    }

    func key(for baseURL: String) -> String? {
        lock.lock()
        defer { lock.unlock() }
        guard let value, value.baseURL == LLMEndpoint(baseURL: baseURL, apiKey: nil).baseURL else { return nil }
        return value.key
    }
}

/// Messages produced off the loop thread (LLM answers, gradients) waiting to be sent.
final class Outbox: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [Refinery_Cluster_Envelope.OneOf_Body] = []

    func post(_ body: Refinery_Cluster_Envelope.OneOf_Body) {
        lock.lock()
        items.append(body)
        lock.unlock()
    }

    func drain() -> [Refinery_Cluster_Envelope.OneOf_Body] {
        lock.lock()
        defer { lock.unlock() }
        let all = items
        items.removeAll()
        return all
    }
}

/// The worker's side of the cluster: one DEALER socket to the coordinator, heartbeats,
/// reconnects with backoff, a spool of results not yet acknowledged (re-sent after a
/// reconnect, so an answer that arrived while the coordinator was down is not paid twice), and
/// the executors for generation and gradient tasks. `run` blocks until the run ends.
public final class Worker {
    public let options: WorkerOptions
    private let context: ZMQContext
    private var socket: ZMQSocket?
    private var monitor: ZMQSocket?
    private let outbox = Outbox()
    /// Tasks being worked on: task → lease epoch.
    private var held: [TaskID: Int64] = [:]
    /// Results sent and not yet acknowledged: lease → encoded envelope.
    private var spool: [Lease: [UInt8]] = [:]
    private var heartbeatInterval = 1.0
    private var lastHeard = 0.0
    private var lastSent = 0.0
    private var backoff = 1.0
    private var admitted = false
    private var generation: (any GenerationTaskRunner)?
    private var generationSettings: Refinery_Cluster_GenerationSettings?
    private var trainingSettings: TrainingWireSettings?
    private var gradients: (any GradientTaskRunner)?
    private var calls: (any CallTaskRunner)?
    /// The key the coordinator sent and the generation endpoint it is for (calls to it may use it).
    private let sentKey = SentKey()
    private let executors: WorkerExecutors
    /// Model files still to fetch (`--fetch-model`), and the one being written.
    private var fetchQueue: [String] = []
    private var fetching: (name: String, handle: FileHandle, written: UInt64)?
    private var fetchStarted = false
    /// Events, one line at a time.
    public var report: (String) -> Void = { _ in }
    /// Messages from the coordinator refused since the start (broken or hostile).
    public var refusedMessages: Int { refusals.value }
    private let refusals = Counter()

    /// `executors` builds what carries tasks out (LLM calls, gradients); tests may pass others.
    public init(options: WorkerOptions, executors: WorkerExecutors = .standard) throws {
        self.options = options
        self.executors = executors
        context = try ZMQContext()
        if let directory = options.modelDirectory { gradients = try executors.gradients(directory, outbox.post) }
    }

    deinit {
        monitor?.close()
        socket?.close()
    }

    static func now() -> Double { Date().timeIntervalSince1970 }

    /// Works until the coordinator says the run is over; returns its reason. Throws when the
    /// coordinator refuses this worker or a task cannot be carried out.
    public func run() throws -> String {
        try connect()
        while true {
            if let socket, try socket.waitForMessage(milliseconds: 10) {
                while let frames = try socket.receive() {
                    guard frames.count == 1, let bytes = frames.first else { continue }
                    let message: CoordinatorMessage
                    do { message = try Wire.fromCoordinator(bytes) } catch {
                        refusals.increment()
                        report("[worker] refused a message from the coordinator: \(error.reason)")
                        continue
                    }
                    lastHeard = Self.now()
                    if let stop = try handle(message) { return stop }
                }
            }
            try checkMonitor()
            for body in outbox.drain() { try deliver(body) }
            let now = Self.now()
            if now - lastSent >= heartbeatInterval {
                var heartbeat = Refinery_Cluster_Heartbeat()
                heartbeat.freeSlots = UInt32(max(0, options.slots - held.count))
                send(.heartbeat(heartbeat))
            }
            if now - lastHeard > heartbeatInterval * Double(options.liveness) + (admitted ? 0 : backoff) {
                // Reconnect now, then wait liveness + 1 s, 2 s, 4 s … 32 s between further attempts.
                report("[worker] no word from \(options.coordinator) for \(Int(now - lastHeard)) s; reconnecting")
                if !admitted { backoff = min(32, backoff * 2) }
                try connect()
            }
        }
    }

    // MARK: Connection

    private func connect() throws {
        monitor?.close()
        socket?.close()
        admitted = false
        let socket = try ZMQSocket(context: context, type: .dealer)
        try socket.setOption(ZMQ_ROUTING_ID, string: options.workerID)
        try socket.setOption(ZMQ_RECONNECT_IVL, 1000)
        try socket.setOption(ZMQ_RECONNECT_IVL_MAX, 32000)
        try socket.setOption(ZMQ_SNDHWM, 0)
        try socket.setOption(ZMQ_RCVHWM, 0)
        try socket.setOption(ZMQ_MAXMSGSIZE, int64: Int64(WireLimits.maxMessageBytes))
        if let security = options.security {
            try socket.setOption(ZMQ_CURVE_SERVERKEY, string: security.serverPublicKey)
            try socket.setOption(ZMQ_CURVE_PUBLICKEY, string: security.keys.publicKey)
            try socket.setOption(ZMQ_CURVE_SECRETKEY, string: security.keys.secretKey)
        }
        let monitorEndpoint = "inproc://monitor-\(UUID().uuidString)"
        guard zmq_socket_monitor(socket.rawHandle, monitorEndpoint, ZMQ_EVENT_HANDSHAKE_FAILED_AUTH | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL) == 0 else {
            throw ZMQError("cannot watch the connection")
        }
        let monitor = try ZMQSocket(context: context, type: .pair)
        try monitor.connect(monitorEndpoint)
        self.monitor = monitor
        try socket.connect(options.coordinator)
        self.socket = socket
        lastHeard = Self.now()
        sendHello()
    }

    /// A refused CURVE handshake shows only on the monitor: stop with a clear message.
    private func checkMonitor() throws {
        guard let monitor, let frames = try monitor.receive(), let first = frames.first, first.count >= 2 else { return }
        let event = Int32(UInt16(first[0]) | UInt16(first[1]) << 8)
        if event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH {
            throw ClusterError("the coordinator at \(options.coordinator) refused this worker's key: add its public key (\(options.security?.keys.publicKey ?? "none")) to the coordinator's allowlist")
        }
        throw ClusterError("the CURVE handshake with \(options.coordinator) failed: check --server-key (the coordinator's public key) and that both sides use keys")
    }

    private func sendHello() {
        var hello = Refinery_Cluster_Hello()
        hello.workerID = options.workerID
        hello.host = options.host
        hello.slots = UInt32(options.slots)
        hello.modelHash = gradients?.modelHash ?? ""
        hello.fetchModel = options.fetchModelInto != nil
        hello.held = held.map { Lease(task: $0.key, epoch: $0.value) }.sorted { $0.task < $1.task }.map(\.message)
        hello.answered = spool.keys.sorted { $0.task < $1.task }.map(\.message)
        send(.hello(hello))
    }

    private func send(_ body: Refinery_Cluster_Envelope.OneOf_Body) {
        guard let bytes = try? Wire.encode(body) else { return }
        send(bytes: bytes)
    }

    private func send(bytes: [UInt8]) {
        if (try? socket?.send([bytes])) == true { lastSent = Self.now() }
    }

    /// Sends a finished result and keeps it until the coordinator acknowledges it.
    private func deliver(_ body: Refinery_Cluster_Envelope.OneOf_Body) throws {
        let wireLease: Refinery_Cluster_Lease
        switch body {
        case .generateResult(let result): wireLease = result.lease
        case .gradientResult(let result): wireLease = result.lease
        case .callResult(let result): wireLease = result.lease
        default: send(body); return
        }
        guard let lease = try? Lease(message: wireLease) else { return }
        held[lease.task] = nil
        let bytes = try Wire.encode(body)
        spool[lease] = bytes
        send(bytes: bytes)
    }

    // MARK: Messages

    /// Handles one checked message; returns the reason when the run is over.
    private func handle(_ message: CoordinatorMessage) throws -> String? {
        switch message {
        case let .welcome(welcome, generation, training):
            admitted = true
            backoff = 1
            heartbeatInterval = max(0.05, Double(welcome.heartbeatMs) / 1000)
            try configure(welcome, generation: generation, training: training)
            report("[worker] \(options.workerID) admitted by \(options.coordinator) (run \(welcome.runID), stage \(welcome.stage))")
            for bytes in spool.values { send(bytes: bytes) }
            if options.fetchModelInto != nil && gradients == nil && !fetchStarted {
                fetchStarted = true
                send(.modelFileRequest(Refinery_Cluster_ModelFileRequest()))
            }
        case let .modelFileChunk(chunk):
            try receiveModelFile(chunk)
        case let .refused(reason):
            throw ClusterError("the coordinator refused this worker: \(reason)")
        case let .heartbeat(helloRequired):
            if helloRequired { sendHello() }
        case let .generateTask(lease, chunkID, text):
            guard held[lease.task] == nil else { break }
            guard let generation else { throw ClusterError("a generation task arrived before the run's settings") }
            held[lease.task] = lease.epoch
            let outbox = outbox
            generation.start(lease: lease, chunkID: chunkID, text: text) { outbox.post($0) }
        case let .callTask(lease, task):
            guard held[lease.task] == nil else { break }
            held[lease.task] = lease.epoch
            if calls == nil {
                // The key: from this worker's --api-key-env when given, else from the variable the call names,
                // else the one the coordinator sent for its generation endpoint.
                let sentKey = sentKey, override = options.apiKeyEnv
                calls = executors.calls(options.slots) { call in
                    ProcessInfo.processInfo.environment[override ?? call.apiKeyEnv].flatMap { $0.isEmpty ? nil : $0 } ?? sentKey.key(for: call.baseURL)
                }
            }
            let outbox = outbox
            calls?.start(lease: lease, task: task) { outbox.post($0) }
        case let .resultAck(lease):
            spool[lease] = nil
        case let .parameterUpdate(version, values):
            guard let gradients else { throw ClusterError("parameters arrived but this worker has no model (start it with --model or --fetch-model)") }
            gradients.enqueue(version: version, values: values)
        case let .gradientTask(lease, task):
            guard held[lease.task] == nil else { break }
            guard let gradients else { throw ClusterError("a gradient task arrived but this worker has no model") }
            held[lease.task] = lease.epoch
            gradients.enqueue(lease: lease, task: task)
        case let .stop(reason, failed):
            if failed { throw ClusterError("the run stopped: \(reason)") }
            return reason
        }
        return nil
    }

    // MARK: Fetching the model (`--fetch-model`)

    private func receiveModelFile(_ chunk: Refinery_Cluster_ModelFileChunk) throws {
        guard let folder = options.fetchModelInto else { return }
        guard chunk.error.isEmpty else { throw ClusterError("cannot fetch the model: \(chunk.error)") }
        if chunk.name.isEmpty {
            guard !chunk.names.isEmpty else { throw ClusterError("the coordinator has no model to fetch (does the run train?)") }
            do { try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true) } catch {
                throw ClusterError("cannot create \(folder): \(error.localizedDescription)")
            }
            fetchQueue = chunk.names.reversed()
            report("[worker] fetching \(chunk.names.count) model files into \(folder)")
            try fetchNextFile()
            return
        }
        guard let current = fetching, current.name == chunk.name, current.written == chunk.offset else { return }
        current.handle.write(chunk.data)
        let written = current.written + UInt64(chunk.data.count)
        if written >= chunk.totalSize || chunk.data.isEmpty {
            try current.handle.close()
            let part = try Self.path(in: folder, name: current.name + ".part")
            let final = try Self.path(in: folder, name: current.name)
            try? FileManager.default.removeItem(atPath: final)
            try FileManager.default.moveItem(atPath: part, toPath: final)
            fetching = nil
            try fetchNextFile()
        } else {
            fetching = (current.name, current.handle, written)
            var request = Refinery_Cluster_ModelFileRequest()
            request.name = current.name
            request.offset = written
            send(.modelFileRequest(request))
        }
    }

    private func fetchNextFile() throws {
        guard let folder = options.fetchModelInto else { return }
        guard let name = fetchQueue.popLast() else {
            gradients = try executors.gradients(folder, outbox.post)
            report("[worker] model fetched (content hash \(gradients?.modelHash ?? "")); taking gradient tasks")
            sendHello()
            return
        }
        let part = try Self.path(in: folder, name: name + ".part")
        guard FileManager.default.createFile(atPath: part, contents: nil), let handle = FileHandle(forWritingAtPath: part) else {
            throw ClusterError("cannot write \(part)")
        }
        fetching = (name, handle, 0)
        var request = Refinery_Cluster_ModelFileRequest()
        request.name = name
        send(.modelFileRequest(request))
    }

    /// `folder/name` for a plain file name, checked to lie directly inside `folder`: nothing the
    /// coordinator sends can make a worker touch a path outside its model folder.
    static func path(in folder: String, name: String) throws -> String {
        guard ModelFileServer.isPlainName(name) else { throw ClusterError("refusing the model file name \(name.prefix(80)): not a plain file name") }
        let base = URL(fileURLWithPath: folder).standardizedFileURL
        let file = base.appendingPathComponent(name).standardizedFileURL
        guard file.deletingLastPathComponent().path == base.path else { throw ClusterError("refusing \(name.prefix(80)): outside \(folder)") }
        return file.path
    }

    private func configure(_ welcome: Refinery_Cluster_Welcome, generation settings: GenerationWireSettings?, training: TrainingWireSettings?) throws {
        if let settings, welcome.generation != generationSettings {
            let keyVariable = options.apiKeyEnv ?? settings.apiKeyEnv
            let key = welcome.apiKey.isEmpty ? ProcessInfo.processInfo.environment[keyVariable].flatMap { $0.isEmpty ? nil : $0 } : welcome.apiKey
            generation = executors.generation(settings, key, options.slots)
            generationSettings = welcome.generation
            sentKey.set(welcome.apiKey.isEmpty ? nil : welcome.apiKey, baseURL: settings.baseURL)
        }
        if let gradients, let training {
            if !welcome.modelHash.isEmpty && welcome.modelHash != gradients.modelHash {
                throw ClusterError("this worker's model (content hash \(gradients.modelHash)) is not the run's (\(welcome.modelHash)); give --model the same folder as the coordinator's")
            }
            // Only new settings rebuild the engine (which waits for a gradient in progress).
            if training != trainingSettings {
                if let directory = options.modelDirectory ?? options.fetchModelInto { try checkMemoryPlan(training, modelDirectory: directory) }
                try gradients.configure(training)
                trainingSettings = training
            }
        }
    }

    /// Refuses a training stage whose memory plan exceeds what this worker may use (the machine's
    /// available memory plus what this process already holds, or `--memory-limit`), before the
    /// model is loaded: the worker says why and which setting of the run would fit.
    private func checkMemoryPlan(_ training: TrainingWireSettings, modelDirectory: String) throws {
        guard !options.ignoreMemoryPlan else { return }
        let config = try ModelConfig.load(directory: URL(fileURLWithPath: modelDirectory))
        let plan = MemoryPlan(config: config, options: training.plannedOptions, dtype: training.dtype)
        let machine = MemoryPlan.availableMemory().map { $0 + MemoryPlan.residentMemory() }
        let limits = [machine, options.memoryLimit].compactMap { $0 }
        guard let available = limits.min() else { return }
        if let refusal = plan.refusal(available: available, options: training.plannedOptions) {
            throw ClusterError("this worker cannot take the run's training tasks: \(refusal) (worker --ignore-memory-plan takes them anyway)")
        }
        report("[worker] training plan: ~\(MemoryPlan.size(plan.total)) expected peak, \(MemoryPlan.size(available)) available")
    }
}
