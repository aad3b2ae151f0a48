import CZeroMQ
import Foundation

/// A ZeroMQ failure: what was being done and libzmq's reason.
public struct ZMQError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public let code: Int32

    init(_ what: String, code: Int32 = zmq_errno()) {
        self.code = code
        message = "\(what): \(String(cString: zmq_strerror(code)))"
    }

    public var description: String { message }
}

/// A ZeroMQ context: one per process, shared by its sockets (and by the ZAP handler, which
/// must live in the same context as the socket it authenticates).
public final class ZMQContext: @unchecked Sendable {
    let handle: UnsafeMutableRawPointer

    public init() throws {
        guard let handle = zmq_ctx_new() else { throw ZMQError("cannot create a ZeroMQ context") }
        self.handle = handle
    }

    deinit { zmq_ctx_term(handle) }
}

/// The socket kinds Refinery uses.
public enum ZMQSocketType: Int32, Sendable {
    case router = 6   // ZMQ_ROUTER
    case dealer = 5   // ZMQ_DEALER
    case rep = 4      // ZMQ_REP
    case pair = 0     // ZMQ_PAIR
}

/// One ZeroMQ socket. Not thread-safe, as libzmq's sockets are not: each socket is created,
/// used and closed by one thread (its owner's loop).
public final class ZMQSocket: @unchecked Sendable {
    private var handle: UnsafeMutableRawPointer?
    public let type: ZMQSocketType
    /// Held so the context outlives the socket: `zmq_ctx_term` waits for every socket of the
    /// context to close, so a context released first (an initializer that threw after making
    /// both, e.g. on a port in use) would wait forever.
    private let context: ZMQContext

    public init(context: ZMQContext, type: ZMQSocketType) throws {
        guard let handle = zmq_socket(context.handle, type.rawValue) else { throw ZMQError("cannot create a ZeroMQ socket") }
        self.handle = handle
        self.type = type
        self.context = context
        try setOption(ZMQ_LINGER, 0)
    }

    deinit { close() }

    /// libzmq's handle, for calls this wrapper does not cover (socket monitors).
    var rawHandle: UnsafeMutableRawPointer? { handle }

    /// Closes the socket, dropping unsent messages.
    public func close() {
        if let handle { zmq_close(handle) }
        handle = nil
    }

    private func live() throws -> UnsafeMutableRawPointer {
        guard let handle else { throw ZMQError("the socket is closed", code: ENOTSOCK) }
        return handle
    }

    /// Sets an integer option (`ZMQ_LINGER`, `ZMQ_ROUTER_MANDATORY`, …).
    public func setOption(_ option: Int32, _ value: Int32) throws {
        var value = value
        guard zmq_setsockopt(try live(), option, &value, MemoryLayout<Int32>.size) == 0 else { throw ZMQError("cannot set socket option \(option)") }
    }

    /// Sets a 64-bit integer option (`ZMQ_MAXMSGSIZE`).
    public func setOption(_ option: Int32, int64 value: Int64) throws {
        var value = value
        guard zmq_setsockopt(try live(), option, &value, MemoryLayout<Int64>.size) == 0 else { throw ZMQError("cannot set socket option \(option)") }
    }

    /// Sets a bytes or string option (`ZMQ_ROUTING_ID`, CURVE keys, `ZMQ_ZAP_DOMAIN`).
    public func setOption(_ option: Int32, bytes: [UInt8]) throws {
        let result = bytes.withUnsafeBytes { zmq_setsockopt(try? live(), option, $0.baseAddress, bytes.count) }
        guard result == 0 else { throw ZMQError("cannot set socket option \(option)") }
    }

    public func setOption(_ option: Int32, string: String) throws { try setOption(option, bytes: Array(string.utf8)) }

    public func bind(_ endpoint: String) throws {
        guard zmq_bind(try live(), endpoint) == 0 else { throw ZMQError("cannot listen on \(endpoint)") }
    }

    public func connect(_ endpoint: String) throws {
        guard zmq_connect(try live(), endpoint) == 0 else { throw ZMQError("cannot connect to \(endpoint)") }
    }

    /// The endpoint actually bound (resolves `tcp://127.0.0.1:*` to its port).
    public func lastEndpoint() throws -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        var size = buffer.count
        guard zmq_getsockopt(try live(), ZMQ_LAST_ENDPOINT, &buffer, &size) == 0 else { throw ZMQError("cannot read the bound endpoint") }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Sends the frames of one message without blocking. Returns false when the message could
    /// not be queued: the peer is unknown or gone (ROUTER with `ZMQ_ROUTER_MANDATORY`), or the
    /// queue is full.
    @discardableResult
    public func send(_ frames: [[UInt8]]) throws -> Bool {
        let socket = try live()
        for (index, frame) in frames.enumerated() {
            let flags = ZMQ_DONTWAIT | (index < frames.count - 1 ? ZMQ_SNDMORE : 0)
            let sent = frame.withUnsafeBytes { zmq_send(socket, $0.baseAddress, frame.count, flags) }
            if sent < 0 {
                let code = zmq_errno()
                if code == EHOSTUNREACH || code == EAGAIN { return false }
                throw ZMQError("cannot send", code: code)
            }
        }
        return true
    }

    /// Receives one whole message without blocking, or nil when none is waiting.
    public func receive() throws -> [[UInt8]]? {
        let socket = try live()
        var frames: [[UInt8]] = []
        while true {
            var message = zmq_msg_t()
            zmq_msg_init(&message)
            defer { zmq_msg_close(&message) }
            if zmq_msg_recv(&message, socket, frames.isEmpty ? ZMQ_DONTWAIT : 0) < 0 {
                let code = zmq_errno()
                if code == EAGAIN && frames.isEmpty { return nil }
                if code == EINTR && frames.isEmpty { return nil }
                throw ZMQError("cannot receive", code: code)
            }
            let size = zmq_msg_size(&message)
            if let data = zmq_msg_data(&message), size > 0 {
                frames.append(Array(UnsafeRawBufferPointer(start: data, count: size)))
            } else {
                frames.append([])
            }
            if zmq_msg_more(&message) == 0 { return frames }
        }
    }

    /// Waits up to `milliseconds` for a message to arrive; true when one is waiting.
    public func waitForMessage(milliseconds: Int) throws -> Bool {
        var item = zmq_pollitem_t(socket: try live(), fd: 0, events: Int16(ZMQ_POLLIN), revents: 0)
        let result = zmq_poll(&item, 1, milliseconds)
        if result < 0 {
            let code = zmq_errno()
            if code == EINTR { return false }
            throw ZMQError("cannot poll", code: code)
        }
        return item.revents & Int16(ZMQ_POLLIN) != 0
    }
}
