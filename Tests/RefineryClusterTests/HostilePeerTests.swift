import CZeroMQ
import Foundation
@testable import RefineryCluster
import RefineryStore
import Testing

/// Hand-made messages on loopback against a real coordinator and a real worker: every bad
/// message is refused with a reason, nothing it names is trusted, and the process lives on.
@Suite(.serialized) struct HostilePeerTests {
    typealias RawPeer = ProtocolTests.RawPeer

    static func welcomed(_ peer: RawPeer) throws -> Bool {
        try peer.receive(seconds: 10) { if case .welcome = $0.body { return true } else { return false } } != nil
    }

    static func lease(_ task: Refinery_Cluster_TaskId, epoch: UInt64) -> Refinery_Cluster_Lease {
        var lease = Refinery_Cluster_Lease()
        lease.task = task
        lease.epoch = epoch
        return lease
    }

    static func microBatch(step: UInt64, index: UInt32) -> Refinery_Cluster_TaskId {
        var micro = Refinery_Cluster_TaskId.MicroBatch()
        micro.step = step
        micro.index = index
        var task = Refinery_Cluster_TaskId()
        task.microBatch = micro
        return task
    }

    static func chunk(_ id: Int64) -> Refinery_Cluster_TaskId {
        var task = Refinery_Cluster_TaskId()
        task.chunk = id
        return task
    }

    @Test func theCoordinatorRefusesEveryBadMessageAndKeepsRunning() throws {
        let store = try ProtocolTests.store(chunks: 4)
        let running = try ProtocolTests.RunningCoordinator(store: store)
        let endpoint = running.coordinator.endpoint
        let friend = try RawPeer(endpoint: endpoint, id: "friend")
        try friend.send(version: Wire.protocolVersion, ProtocolTests.hello(id: "friend"))
        #expect(try Self.welcomed(friend))
        let task = try friend.receive(seconds: 10) { if case .generateTask = $0.body { return true } else { return false } }
        guard case let .generateTask(leased)? = task?.body else { Issue.record("no task for the friend"); return }

        let hostile = try RawPeer(endpoint: endpoint, id: "hostile")
        // Not protobuf, and truncated protobuf.
        #expect(try hostile.socket.send([[0xFF, 0xFF, 0xFF, 0xFF, 0x0F, 0x01]]))
        let hello = try Wire.encode(ProtocolTests.hello(id: "hostile"))
        #expect(try hostile.socket.send([Array(hello.prefix(hello.count - 3))]))
        // Integers at their limits in every numeric field of a hello.
        var extreme = Refinery_Cluster_Hello()
        extreme.workerID = "hostile"
        extreme.slots = .max
        extreme.held = [Self.lease(Self.microBatch(step: .max, index: .max), epoch: .max), Self.lease(Self.chunk(.min), epoch: 1 << 63)]
        try hostile.send(version: .max, .hello(extreme))
        try hostile.send(version: Wire.protocolVersion, .hello(extreme))
        // Now a member: results with epochs of 2^63 and more, steps of 2^64 − 1, for chunks never leased…
        try hostile.send(version: Wire.protocolVersion, ProtocolTests.hello(id: "hostile"))
        #expect(try Self.welcomed(hostile))
        var result = LeaseTests.result(for: Lease(task: .chunk(1), epoch: 1))
        for epoch: UInt64 in [1 << 63, .max, 0] {
            result.lease = Self.lease(Self.chunk(result.chunkID), epoch: epoch)
            try hostile.send(version: Wire.protocolVersion, .generateResult(result))
        }
        var gradient = Refinery_Cluster_GradientResult()
        gradient.lease = Self.lease(Self.microBatch(step: .max, index: .max), epoch: .max)
        gradient.parameterVersion = .max
        gradient.tokens = .max
        gradient.lossSum = .nan
        gradient.computeSeconds = -.infinity
        gradient.gradient = Data(repeating: 0xFF, count: 7)
        try hostile.send(version: Wire.protocolVersion, .gradientResult(gradient))
        gradient.lease = Self.lease(Self.microBatch(step: 0, index: 0), epoch: 1)
        gradient.gradient = Data(repeating: 0xFF, count: 8)
        gradient.tokens = 1
        gradient.computeSeconds = 0
        gradient.parameterVersion = 0
        try hostile.send(version: Wire.protocolVersion, .gradientResult(gradient))
        // …the friend's own lease, and a chunk that does not exist.
        var stolen = LeaseTests.result(for: Lease(task: .chunk(leased.chunkID), epoch: 1))
        stolen.lease = leased.lease
        try hostile.send(version: Wire.protocolVersion, .generateResult(stolen))
        var ghost = LeaseTests.result(for: Lease(task: .chunk(1_000_000), epoch: 1))
        ghost.chunkID = 1_000_000
        try hostile.send(version: Wire.protocolVersion, .generateResult(ghost))
        // Model files outside the folder, at offsets beyond any file.
        for (name, offset) in [("../../etc/passwd", UInt64(0)), ("..", 0), ("config.json", UInt64.max)] {
            var request = Refinery_Cluster_ModelFileRequest()
            request.name = name
            request.offset = offset
            try hostile.send(version: Wire.protocolVersion, .modelFileRequest(request))
        }
        // The friend itself, with usage at the limits of its types: refused, its lease kept.
        var overflowing = LeaseTests.result(for: try Lease(message: leased.lease))
        overflowing.requests[0].promptTokens = .min
        try friend.send(version: Wire.protocolVersion, .generateResult(overflowing))
        overflowing.requests[0].promptTokens = 1
        overflowing.requests[0].cost = .nan
        try friend.send(version: Wire.protocolVersion, .generateResult(overflowing))
        // The coordinator is alive, answers a newcomer, and stored nothing of all that.
        let late = try RawPeer(endpoint: endpoint, id: "late")
        try late.send(version: Wire.protocolVersion, ProtocolTests.hello(id: "late"))
        #expect(try Self.welcomed(late))
        // 2 undecodable + 2 extreme hellos + 3 epochs + 2 gradients + the friend's lease + a ghost chunk + 3 file requests
        // + 2 overflowing usages,
        // each refused as it arrives (the peers' messages reach the coordinator in no fixed order).
        let deadline = Date().addingTimeInterval(10)
        while running.coordinator.refusedMessages < 16 && Date() < deadline { Thread.sleep(forTimeInterval: 0.02) }
        #expect(running.coordinator.refusedMessages == 16, "\(running.coordinator.refusedMessages) refusals")
        #expect(running.error == nil)
        #expect(try store.samples().isEmpty)
        #expect(try store.workers().allSatisfy { $0.tasksDone == 0 })
        #expect(try store.workers().map(\.id).sorted() == ["friend", "hostile", "late"])
        // The friend's real answer still counts.
        try friend.send(version: Wire.protocolVersion, .generateResult(LeaseTests.result(for: try Lease(message: leased.lease))))
        let ack = try friend.receive(seconds: 10) { if case .resultAck = $0.body { return true } else { return false } }
        #expect(ack != nil)
        #expect(try store.samples().count == 5)
    }

    @Test func nothingTheCoordinatorSendsMakesAWorkerTouchAPathOutsideItsModelFolder() throws {
        let root = try ProtocolTests.temporary()
        let folder = root.appendingPathComponent("model")
        let bystander = root.appendingPathComponent("keep.txt")
        try "untouched".write(to: bystander, atomically: true, encoding: .utf8)
        for name in ["../x", "..", ".", "a/b", "/etc/passwd", "", ".hidden", "con\u{0}fig.json"] {
            #expect(throws: ClusterError.self, "\(name)") { try Worker.path(in: folder.path, name: name) }
        }
        #expect(try Worker.path(in: folder.path, name: "config.json") == folder.appendingPathComponent("config.json").standardizedFileURL.path)

        // A raw coordinator and a real worker that fetches its model.
        let context = try ZMQContext()
        let router = try ZMQSocket(context: context, type: .router)
        try router.bind("tcp://127.0.0.1:*")
        var options = WorkerOptions(coordinator: try router.lastEndpoint())
        options.workerID = "victim"
        options.fetchModelInto = folder.path
        let worker = UncheckedBox(try Worker(options: options))
        let failure = ErrorBox()
        let thread = Thread { do { _ = try worker.value.run() } catch { failure.set(error) } }
        thread.start()
        func receive(seconds: Double = 10, _ match: (Refinery_Cluster_Envelope) -> Bool) throws -> Refinery_Cluster_Envelope? {
            let end = Date().addingTimeInterval(seconds)
            while Date() < end {
                guard try router.waitForMessage(milliseconds: 50), let frames = try router.receive(), frames.count == 2 else { continue }
                if let envelope = try? Refinery_Cluster_Envelope(serializedBytes: frames[1]), match(envelope) { return envelope }
            }
            return nil
        }
        func send(_ body: Refinery_Cluster_Envelope.OneOf_Body, version: UInt32 = Wire.protocolVersion) throws {
            var envelope = Refinery_Cluster_Envelope()
            envelope.protocolVersion = version
            envelope.body = body
            #expect(try router.send([Array("victim".utf8), Array(try envelope.serializedBytes() as Data)]))
        }
        func alive() throws -> Bool {
            var heartbeat = Refinery_Cluster_Heartbeat()
            heartbeat.helloRequired = true
            try send(.heartbeat(heartbeat))
            return try receive { if case .hello = $0.body { return true } else { return false } } != nil
        }
        #expect(try receive { if case .hello = $0.body { return true } else { return false } } != nil)
        var welcome = Refinery_Cluster_Welcome()
        welcome.heartbeatMs = .max  // refused
        try send(.welcome(welcome))
        welcome.heartbeatMs = 1000
        welcome.runID = "r"
        try send(.welcome(welcome))
        #expect(try receive { if case .modelFileRequest = $0.body { return true } else { return false } } != nil)
        // File lists and pieces that name paths outside the folder, sizes at their limits.
        for names in [["../escape.json"], [".."], ["/tmp/abs.json"], ["ok.json", "../../x"]] {
            var list = Refinery_Cluster_ModelFileChunk()
            list.names = names
            try send(.modelFileChunk(list))
        }
        var piece = Refinery_Cluster_ModelFileChunk()
        piece.name = ".."
        piece.data = Data("gotcha".utf8)
        try send(.modelFileChunk(piece))
        piece.name = "config.json"
        piece.offset = .max
        piece.totalSize = .max
        try send(.modelFileChunk(piece))
        // Tasks at integer limits and with broken geometry.
        var task = Refinery_Cluster_GenerateTask()
        task.lease = Self.lease(Self.chunk(1), epoch: .max)
        task.chunkID = 1
        task.text = "x"
        try send(.generateTask(task))
        var gradient = Refinery_Cluster_GradientTask()
        gradient.lease = Self.lease(Self.microBatch(step: 1, index: 0), epoch: 1)
        gradient.step = 1
        var sequence = Refinery_Cluster_Sequence()
        sequence.ids = [1, 2, 3]
        sequence.trained = Data([0, 1])
        gradient.sequences = [sequence]
        gradient.dropoutSeeds = [1]
        try send(.gradientTask(gradient))  // mask shorter than the ids
        sequence.trained = Data([0, 1, 1])
        sequence.keyStart = [0, 5, 0]
        gradient.sequences = [sequence]
        try send(.gradientTask(gradient))  // a first key after its query
        sequence.keyStart = []
        sequence.positions = [0, 1]
        gradient.sequences = [sequence]
        try send(.gradientTask(gradient))  // too few positions
        sequence.positions = []
        gradient.sequences = [sequence]
        gradient.dropoutSeeds = []
        try send(.gradientTask(gradient))  // no dropout seeds
        gradient.dropoutSeeds = [1]
        sequence.ids = [1, Int32.min, Int32.max]
        gradient.sequences = [sequence]
        try send(.gradientTask(gradient))  // a negative token id
        gradient.step = .max
        try send(.gradientTask(gradient))
        var update = Refinery_Cluster_ParameterUpdate()
        update.version = .max
        update.values = Data(count: 12)
        update.count = .max
        try send(.parameterUpdate(update))
        #expect(try alive(), "the worker still answers")
        // 1 welcome + 4 file lists + 2 pieces + 1 chunk task + 6 gradient tasks + 1 parameter update.
        #expect(worker.value.refusedMessages == 15, "\(worker.value.refusedMessages) refusals")
        #expect(failure.error == nil, "\(String(describing: failure.error))")
        let outside = try FileManager.default.contentsOfDirectory(atPath: root.path).sorted()
        #expect(outside == ["keep.txt", "model"] || outside == ["keep.txt"], "\(outside)")
        #expect(try String(contentsOf: bystander, encoding: .utf8) == "untouched")
        #expect(!FileManager.default.fileExists(atPath: "/tmp/abs.json"))
        var stop = Refinery_Cluster_Stop()
        stop.reason = "test over"
        try send(.stop(stop))
        let end = Date().addingTimeInterval(10)
        while thread.isExecuting && Date() < end { Thread.sleep(forTimeInterval: 0.05) }
        #expect(!thread.isExecuting)
        router.close()
    }
}

/// Hands a value that is used from one thread at a time to another thread.
struct UncheckedBox<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}

/// An error set by a background thread.
final class ErrorBox: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Error?
    var error: Error? { lock.lock(); defer { lock.unlock() }; return value }
    func set(_ error: Error) { lock.lock(); value = error; lock.unlock() }
}
