import CZeroMQ
import Foundation
import RefineryCluster
import RefineryStore
import Testing

/// Real ZeroMQ sockets on loopback and a real SQLite state file: the coordinator's admission
/// rules and the transport's basic promises.
@Suite(.serialized) struct ProtocolTests {
    static func temporary() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("refinery-cluster-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    /// A store with `chunks` pending chunks, so a generation stage has work and keeps running.
    static func store(chunks: Int) throws -> RunStore {
        let store = try RunStore(path: try temporary().appendingPathComponent("state.db").path)
        try store.addArticle(id: "a", contentHash: "h", characters: 10, platform: nil, authorID: nil, authorName: nil, link: nil,
                             chunks: (0..<chunks).map { "Chunk \($0) text." })
        return store
    }

    /// Runs a coordinator on its own thread until `stop` is set or its stage completes.
    final class RunningCoordinator: @unchecked Sendable {
        let coordinator: Coordinator
        let stage: GenerationStage
        let done = DispatchSemaphore(value: 0)
        private(set) var error: Error?

        init(store: RunStore, modelHash: String = "") throws {
            var options = CoordinatorOptions(listen: "tcp://127.0.0.1:*")
            options.modelHash = modelHash
            options.generationSettings = nil
            coordinator = try Coordinator(store: store, options: options)
            stage = try GenerationStage(store: store)
            let thread = Thread { [self] in
                do { try coordinator.run(stage) } catch { self.error = error }
                done.signal()
            }
            thread.start()
        }

        deinit {
            coordinator.cancel()
            done.wait()
        }
    }

    /// A raw DEALER that speaks the protocol by hand.
    final class RawPeer {
        let context: ZMQContext
        let socket: ZMQSocket

        init(endpoint: String, id: String) throws {
            context = try ZMQContext()
            socket = try ZMQSocket(context: context, type: .dealer)
            try socket.setOption(ZMQ_ROUTING_ID, string: id)
            try socket.connect(endpoint)
        }

        func send(version: UInt32, _ body: Refinery_Cluster_Envelope.OneOf_Body) throws {
            var envelope = Refinery_Cluster_Envelope()
            envelope.protocolVersion = version
            envelope.body = body
            let data: Data = try envelope.serializedBytes()
            #expect(try socket.send([Array(data)]))
        }

        /// The first message matching `match` within `seconds`.
        func receive(seconds: Double, _ match: (Refinery_Cluster_Envelope) -> Bool) throws -> Refinery_Cluster_Envelope? {
            let end = Date().addingTimeInterval(seconds)
            while Date() < end {
                guard try socket.waitForMessage(milliseconds: 50), let frames = try socket.receive() else { continue }
                if let envelope = frames.last.flatMap({ try? Refinery_Cluster_Envelope(serializedBytes: $0) }), match(envelope) { return envelope }
            }
            return nil
        }

        deinit { socket.close() }
    }

    static func hello(id: String, modelHash: String = "") -> Refinery_Cluster_Envelope.OneOf_Body {
        var hello = Refinery_Cluster_Hello()
        hello.workerID = id
        hello.host = "test"
        hello.slots = 2
        hello.modelHash = modelHash
        return .hello(hello)
    }

    @Test func routerAndDealerExchangeFramesAndUnknownPeersAreReported() throws {
        let context = try ZMQContext()
        let router = try ZMQSocket(context: context, type: .router)
        try router.setOption(ZMQ_ROUTER_MANDATORY, 1)
        try router.bind("tcp://127.0.0.1:*")
        let dealer = try ZMQSocket(context: context, type: .dealer)
        try dealer.setOption(ZMQ_ROUTING_ID, string: "w1")
        try dealer.connect(try router.lastEndpoint())
        #expect(try dealer.send([[1, 2, 3]]))
        #expect(try router.waitForMessage(milliseconds: 5000))
        let frames = try router.receive()
        #expect(frames == [Array("w1".utf8), [1, 2, 3]])
        #expect(try router.send([Array("w1".utf8), [9]]))
        #expect(try dealer.waitForMessage(milliseconds: 5000))
        #expect(try dealer.receive() == [[9]])
        #expect(try router.send([Array("nobody".utf8), [9]]) == false, "ROUTER_MANDATORY reports a peer it does not know")
        dealer.close()
        router.close()
    }

    @Test func aWorkerOfAnotherProtocolVersionIsRefusedWithTheReason() throws {
        let store = try Self.store(chunks: 3)
        let running = try RunningCoordinator(store: store)
        let peer = try RawPeer(endpoint: running.coordinator.endpoint, id: "old-worker")
        try peer.send(version: Wire.protocolVersion + 1, Self.hello(id: "old-worker"))
        let reply = try peer.receive(seconds: 10) { if case .refused = $0.body { return true } else { return false } }
        guard case let .refused(refused)? = reply?.body else { Issue.record("no refusal arrived"); return }
        #expect(refused.reason.contains("protocol version"))
        // A refused worker gets no task and is not recorded as a worker.
        let task = try peer.receive(seconds: 1.5) { if case .generateTask = $0.body { return true } else { return false } }
        #expect(task == nil)
        #expect(try store.workers().isEmpty)
    }

    @Test func aWorkerWithAnotherBaseModelIsRefusedAndOneWithTheSameIsWelcomed() throws {
        let store = try Self.store(chunks: 3)
        let running = try RunningCoordinator(store: store, modelHash: "aaaa")
        let stranger = try RawPeer(endpoint: running.coordinator.endpoint, id: "stranger")
        try stranger.send(version: Wire.protocolVersion, Self.hello(id: "stranger", modelHash: "bbbb"))
        let refusal = try stranger.receive(seconds: 10) { if case .refused = $0.body { return true } else { return false } }
        guard case let .refused(refused)? = refusal?.body else { Issue.record("no refusal arrived"); return }
        #expect(refused.reason.contains("base model"))

        let friend = try RawPeer(endpoint: running.coordinator.endpoint, id: "friend")
        try friend.send(version: Wire.protocolVersion, Self.hello(id: "friend", modelHash: "aaaa"))
        let welcome = try friend.receive(seconds: 10) { if case .welcome = $0.body { return true } else { return false } }
        #expect(welcome != nil)
        // It is then leased generation tasks with (task id, epoch).
        let task = try friend.receive(seconds: 10) { if case .generateTask = $0.body { return true } else { return false } }
        guard case let .generateTask(generate)? = task?.body else { Issue.record("no task arrived"); return }
        #expect(generate.lease.task.chunk >= 1 && generate.lease.epoch == 1)
        #expect(try store.workers().map(\.id) == ["friend"])
    }

    @Test func aPeerTheCoordinatorDoesNotKnowIsAskedToSayHello() throws {
        let store = try Self.store(chunks: 1)
        let running = try RunningCoordinator(store: store)
        let peer = try RawPeer(endpoint: running.coordinator.endpoint, id: "ghost")
        try peer.send(version: Wire.protocolVersion, .heartbeat(Refinery_Cluster_Heartbeat()))
        let reply = try peer.receive(seconds: 10) { if case .heartbeat = $0.body { return true } else { return false } }
        guard case let .heartbeat(heartbeat)? = reply?.body else { Issue.record("no answer"); return }
        #expect(heartbeat.helloRequired)
    }

    @Test func leasesKeepGrowingEpochsAcrossReopeningTheStore() throws {
        let dir = try Self.temporary()
        let path = dir.appendingPathComponent("s.db").path
        do {
            let store = try RunStore(path: path)
            #expect(try store.grantLease(taskID: "chunk:1", workerID: "w", expiresAt: 1).epoch == 1)
            try store.releaseLeases(["chunk:1"])
            #expect(try store.grantLease(taskID: "chunk:1", workerID: "v", expiresAt: 2).epoch == 2)
        }
        let reopened = try RunStore(path: path)
        #expect(try reopened.leases() == [LeaseRecord(taskID: "chunk:1", epoch: 2, workerID: "v", expiresAt: 2)])
        #expect(try reopened.grantLease(taskID: "chunk:1", workerID: "w", expiresAt: 3).epoch == 3)
    }

    @Test(arguments: 0..<20)
    func curveKeysRoundTripThroughTheirFileAndAllowlistsRejectGarbage(round: Int) throws {
        // Twenty fresh keypairs: Z85 keys hold "=", "-", "#" and other characters that parsers trip on.
        let pair = try CurveKeyPair.generate()
        #expect(CurveKeyPair.isKey(pair.publicKey) && CurveKeyPair.isKey(pair.secretKey) && pair.publicKey != pair.secretKey)
        let dir = try Self.temporary()
        let file = dir.appendingPathComponent("k.key")
        try pair.fileText.write(to: file, atomically: true, encoding: .utf8)
        #expect(try CurveKeyPair(file: file.path) == pair)
        // A public key is given as itself, in a file of its own, or by a key file's `public` line.
        let pub = dir.appendingPathComponent("k.pub")
        try (pair.publicKey + "\n").write(to: pub, atomically: true, encoding: .utf8)
        #expect(try CurveKeyPair.publicKey(keyOrFile: pub.path) == pair.publicKey)
        #expect(try CurveKeyPair.publicKey(keyOrFile: file.path) == pair.publicKey)
        #expect(try CurveKeyPair.publicKey(keyOrFile: pair.publicKey) == pair.publicKey)
        #expect(throws: ClusterError.self) { try CurveKeyPair.publicKey(keyOrFile: dir.appendingPathComponent("absent").path) }
        let allow = dir.appendingPathComponent("allow.txt")
        try "# workers\n\(pair.publicKey)  # one\n".write(to: allow, atomically: true, encoding: .utf8)
        #expect(try CurveKeyPair.allowlist(file: allow.path) == [pair.publicKey])
        try "not-a-key\n".write(to: allow, atomically: true, encoding: .utf8)
        #expect(throws: ClusterError.self) { try CurveKeyPair.allowlist(file: allow.path) }
    }
}
