import CZeroMQ
import Foundation

/// A CURVE keypair in Z85 text (40 characters each), as `refinery keys generate` writes it.
public struct CurveKeyPair: Sendable, Equatable {
    public let publicKey: String
    public let secretKey: String

    /// A fresh keypair from libzmq (libsodium underneath).
    public static func generate() throws -> CurveKeyPair {
        var publicKey = [CChar](repeating: 0, count: 41), secretKey = [CChar](repeating: 0, count: 41)
        guard zmq_curve_keypair(&publicKey, &secretKey) == 0 else {
            throw ZMQError("cannot generate a CURVE keypair (is libzmq built with libsodium?)")
        }
        return CurveKeyPair(publicKey: Self.text(publicKey), secretKey: Self.text(secretKey))
    }

    /// The text of a NUL-terminated C buffer.
    static func text(_ buffer: [CChar]) -> String {
        String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    public init(publicKey: String, secretKey: String) {
        self.publicKey = publicKey
        self.secretKey = secretKey
    }

    /// Reads a key file: lines `public = …` and `secret = …` (comments start with #).
    public init(file path: String) throws {
        let text: String
        do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
            throw ClusterError("cannot read the key file \(path): \(error.localizedDescription)")
        }
        var values: [String: String] = [:]
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            if parts.count == 2 { values[parts[0]] = parts[1] }
        }
        guard let publicKey = values["public"], let secretKey = values["secret"], Self.isKey(publicKey), Self.isKey(secretKey) else {
            throw ClusterError("\(path) is not a Refinery key file: it needs lines `public = <40 Z85 characters>` and `secret = <40 Z85 characters>` (make one with `refinery keys generate`)")
        }
        self.init(publicKey: publicKey, secretKey: secretKey)
    }

    /// The key file text; the secret half must stay on its machine.
    public var fileText: String {
        "# Refinery CURVE keypair. Keep this file private (chmod 600); share only the public key.\npublic = \(publicKey)\nsecret = \(secretKey)\n"
    }

    /// A Z85 CURVE key: 40 characters of the Z85 alphabet.
    public static func isKey(_ text: String) -> Bool {
        let alphabet = Set("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#")
        return text.count == 40 && text.allSatisfy { alphabet.contains($0) }
    }

    /// A public key given as itself, or as a file that holds it (as printed by `refinery keys
    /// generate`, or a key file's `public = …` line).
    public static func publicKey(keyOrFile value: String) throws -> String {
        if isKey(value) && !FileManager.default.fileExists(atPath: value) { return value }
        guard let text = try? String(contentsOfFile: value, encoding: .utf8) else {
            throw ClusterError("\(value) is neither a 40-character Z85 public key nor a readable file holding one")
        }
        // Z85 keys may hold "=", so only the first "=" of a `public = KEY` line separates.
        for line in text.split(separator: "\n") {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if isKey(trimmed) { return trimmed }
            let parts = trimmed.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            if parts.count == 2, parts[0] == "public", isKey(parts[1]) { return parts[1] }
        }
        throw ClusterError("\(value) holds no public key (expected a 40-character Z85 key, as `refinery keys generate` prints)")
    }

    /// Reads an allowlist: one public key per line (comments start with #).
    public static func allowlist(file path: String) throws -> Set<String> {
        let text: String
        do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
            throw ClusterError("cannot read the allowlist \(path): \(error.localizedDescription)")
        }
        var keys: Set<String> = []
        for (number, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            // A line's first word is a key; Z85 uses "#", so a comment is a line whose first
            // word is not a key and that starts with "#", or whatever follows the key.
            guard let first = raw.split(whereSeparator: { $0 == " " || $0 == "\t" }).first.map(String.init) else { continue }
            if isKey(first) {
                keys.insert(first)
            } else if !first.hasPrefix("#") {
                throw ClusterError("\(path):\(number + 1): \"\(first)\" is not a 40-character Z85 public key")
            }
        }
        return keys
    }
}

/// The coordinator's CURVE settings: its secret key and the worker keys it admits.
public struct CurveServerSecurity: Sendable {
    public var serverSecretKey: String
    public var allowedWorkerKeys: Set<String>

    public init(serverSecretKey: String, allowedWorkerKeys: Set<String>) {
        self.serverSecretKey = serverSecretKey
        self.allowedWorkerKeys = allowedWorkerKeys
    }
}

/// A worker's CURVE settings: its keypair and the coordinator's public key.
public struct CurveClientSecurity: Sendable {
    public var keys: CurveKeyPair
    public var serverPublicKey: String

    public init(keys: CurveKeyPair, serverPublicKey: String) {
        self.keys = keys
        self.serverPublicKey = serverPublicKey
    }
}

/// A ZAP handler (ZeroMQ RFC 27) that admits CURVE clients whose public key is allowlisted and
/// refuses everything else — there is no unauthenticated fallback. Runs on its own thread in
/// the coordinator's context.
final class ZAPAuthenticator: @unchecked Sendable {
    static let domain = "refinery"
    private let socket: ZMQSocket
    private let allowed: Set<String>
    private let lock = NSLock()
    private var running = true
    private var thread: Thread?
    private let finished = DispatchSemaphore(value: 0)
    /// Keys refused so far (for logs and tests).
    private(set) var refusals = 0

    init(context: ZMQContext, allowed: Set<String>) throws {
        self.allowed = allowed
        socket = try ZMQSocket(context: context, type: .rep)
        try socket.bind("inproc://zeromq.zap.01")
        let thread = Thread { [self] in serve() }
        thread.name = "refinery-zap"
        self.thread = thread
        thread.start()
    }

    private var isRunning: Bool {
        lock.lock()
        defer { lock.unlock() }
        return running
    }

    private func serve() {
        defer { socket.close(); finished.signal() }
        while isRunning {
            guard (try? socket.waitForMessage(milliseconds: 100)) == true, let frames = try? socket.receive() else { continue }
            // version, request id, domain, address, identity, mechanism, credentials…
            guard frames.count >= 6 else { continue }
            let mechanism = String(decoding: frames[5], as: UTF8.self)
            var admitted = false
            if mechanism == "CURVE", frames.count >= 7, frames[6].count == 32 {
                var text = [CChar](repeating: 0, count: 41)
                let encoded = frames[6].withUnsafeBufferPointer { zmq_z85_encode(&text, $0.baseAddress, 32) }
                admitted = encoded != nil && allowed.contains(CurveKeyPair.text(text))
            }
            if !admitted {
                lock.lock()
                refusals += 1
                lock.unlock()
            }
            let reply: [[UInt8]] = [Array("1.0".utf8), frames[1], Array((admitted ? "200" : "400").utf8),
                                    Array((admitted ? "OK" : "key not allowlisted").utf8), [], []]
            _ = try? socket.send(reply)
        }
    }

    func stop() {
        lock.lock()
        let wasRunning = running
        running = false
        lock.unlock()
        if wasRunning { finished.wait() }
    }
}
