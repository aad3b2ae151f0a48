import CZeroMQ
import Foundation

/// One message from a peer: its routing id and the bytes of one envelope.
public struct PeerMessage: Sendable, Equatable {
    public var peer: [UInt8]
    public var bytes: [UInt8]

    public init(peer: [UInt8], bytes: [UInt8]) {
        self.peer = peer
        self.bytes = bytes
    }
}

/// How the coordinator's core reaches its workers: ZeroMQ in production, memory in tests. The
/// core never sees sockets; the transport never sees leases.
public protocol CoordinatorTransport: AnyObject {
    /// Where workers connect (empty for a transport without an address).
    var endpoint: String { get }
    /// The messages that arrived, waiting up to `milliseconds` for the first.
    func receive(waitingMilliseconds milliseconds: Int) throws -> [PeerMessage]
    /// Sends to `peer`; false when the peer cannot be reached (unknown, gone).
    func send(_ bytes: [UInt8], to peer: [UInt8]) -> Bool
}

/// The coordinator's ROUTER socket (DESIGN §4): `ROUTER_MANDATORY` so unknown peers are
/// reported, `ROUTER_HANDOVER` so a reconnecting worker takes its routing id back, CURVE and
/// the ZAP allowlist when keys are configured.
public final class ZMQRouterTransport: CoordinatorTransport {
    private let context: ZMQContext
    private let socket: ZMQSocket
    private var authenticator: ZAPAuthenticator?
    public let endpoint: String

    public init(listen: String, security: CurveServerSecurity?) throws {
        context = try ZMQContext()
        if let security { authenticator = try ZAPAuthenticator(context: context, allowed: security.allowedWorkerKeys) }
        socket = try ZMQSocket(context: context, type: .router)
        try socket.setOption(ZMQ_ROUTER_MANDATORY, 1)
        try socket.setOption(ZMQ_ROUTER_HANDOVER, 1)
        try socket.setOption(ZMQ_SNDHWM, 0)
        try socket.setOption(ZMQ_RCVHWM, 0)
        // A peer that sends more than a message may hold is cut off before it is read into memory.
        try socket.setOption(ZMQ_MAXMSGSIZE, int64: Int64(WireLimits.maxMessageBytes))
        if let security {
            try socket.setOption(ZMQ_CURVE_SERVER, 1)
            try socket.setOption(ZMQ_CURVE_SECRETKEY, string: security.serverSecretKey)
            try socket.setOption(ZMQ_ZAP_DOMAIN, string: ZAPAuthenticator.domain)
        }
        try socket.bind(listen)
        endpoint = try socket.lastEndpoint()
    }

    deinit {
        socket.close()
        authenticator?.stop()
    }

    public func receive(waitingMilliseconds milliseconds: Int) throws -> [PeerMessage] {
        guard try socket.waitForMessage(milliseconds: milliseconds) else { return [] }
        var messages: [PeerMessage] = []
        while let frames = try socket.receive() {
            // A ROUTER prepends the routing id; anything but [id, envelope] is not a worker's.
            guard frames.count == 2 else { continue }
            messages.append(PeerMessage(peer: frames[0], bytes: frames[1]))
        }
        return messages
    }

    public func send(_ bytes: [UInt8], to peer: [UInt8]) -> Bool {
        (try? socket.send([peer, bytes])) == true
    }
}

/// A transport in memory: tests put messages in as any peer and read what the coordinator
/// sent to each, with no sockets and no waiting (the way swift-nio's `EmbeddedChannel` tests
/// channel logic).
public final class InMemoryTransport: CoordinatorTransport, @unchecked Sendable {
    private let lock = NSLock()
    private var inbound: [PeerMessage] = []
    private var outbound: [[UInt8]: [[UInt8]]] = [:]
    /// Peers the coordinator can reach; a send to any other fails as ROUTER_MANDATORY does.
    private var reachable: Set<[UInt8]> = []
    public let endpoint = "inproc://memory"

    public init() {}

    /// Queues `bytes` as sent by `peer` (which becomes reachable).
    public func deliver(_ bytes: [UInt8], from peer: String) {
        lock.lock()
        inbound.append(PeerMessage(peer: Array(peer.utf8), bytes: bytes))
        reachable.insert(Array(peer.utf8))
        lock.unlock()
    }

    /// Everything sent to `peer` since the last call, oldest first.
    public func take(for peer: String) -> [[UInt8]] {
        lock.lock()
        defer { lock.unlock() }
        return outbound.removeValue(forKey: Array(peer.utf8)) ?? []
    }

    public func receive(waitingMilliseconds milliseconds: Int) throws -> [PeerMessage] {
        lock.lock()
        defer { lock.unlock() }
        let messages = inbound
        inbound.removeAll()
        return messages
    }

    public func send(_ bytes: [UInt8], to peer: [UInt8]) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        guard reachable.contains(peer) else { return false }
        outbound[peer, default: []].append(bytes)
        return true
    }
}
