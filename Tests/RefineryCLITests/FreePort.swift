import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Ports for the coordinators the tests start on loopback. They are chosen below the kernel's
/// ephemeral range (`ip_local_port_range`): any outgoing connection of a busy test run (HTTP to
/// the mocks, the dashboard's clients) takes its local port from that range, and a coordinator
/// told to listen on such a port cannot bind it. A port is also checked free by binding it once.
enum FreePort {
    /// A loopback TCP port below the ephemeral range that nothing holds at the moment.
    static func pick() -> Int {
        // Where the ephemeral range starts at or below 20000 nothing is safe from it; the free
        // check below is then all there is.
        let start = ephemeralStart()
        let range = 20_000..<(start > 20_000 ? min(start, 32_768) : 32_768)
        for _ in 0..<100 {
            let port = Int.random(in: range)
            if isFree(port) { return port }
        }
        return Int.random(in: range)
    }

    /// `tcp://127.0.0.1:PORT` for a port from `pick()`.
    static func endpoint() -> String { "tcp://127.0.0.1:\(pick())" }

    /// The first port of the kernel's ephemeral range (32768 where it cannot be read).
    static func ephemeralStart() -> Int {
        guard let text = try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_local_port_range", encoding: .utf8),
              let first = text.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" }).first,
              let value = Int(first) else { return 32_768 }
        return value
    }

    /// Whether a socket can bind 127.0.0.1:`port` now (with SO_REUSEADDR, as ZeroMQ binds).
    static func isFree(_ port: Int) -> Bool {
        guard let descriptor = bound(port) else { return false }
        close(descriptor)
        return true
    }

    /// A socket listening on 127.0.0.1:`port` (close it to let go), nil when the port is taken.
    static func listen(on port: Int) -> Int32? {
        guard let descriptor = bound(port) else { return nil }
        guard Glibc.listen(descriptor, 1) == 0 else {
            close(descriptor)
            return nil
        }
        return descriptor
    }

    private static func bound(_ port: Int) -> Int32? {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { return nil }
        var yes: Int32 = 1
        setsockopt(descriptor, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let isBound = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
        guard isBound else {
            close(descriptor)
            return nil
        }
        return descriptor
    }
}
