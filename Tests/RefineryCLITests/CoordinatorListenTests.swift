import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Testing

/// `refinery coordinator --listen` on a port another socket holds.
@Suite struct CoordinatorListenTests {
    /// It says which endpoint it cannot listen on and why, and exits. (It used to hang without a
    /// word: the ZeroMQ context, released before the socket whose bind failed, waited for that
    /// socket to close forever.)
    @Test func aPortInUseIsAnErrorNotAHang() async throws {
        try await offThePool {
            let (dir, articles) = try ClusterTests.folderWithArticles(count: 2)
            let mock = try ClusterTests.Mock(latencyMs: 0)
            let config = try ClusterTests.config(dir: dir, name: "busy", articles: articles, mock: mock, train: false)
            var held: (port: Int, socket: Int32)?
            for _ in 0..<20 where held == nil {
                let port = FreePort.pick()
                if let socket = FreePort.listen(on: port) { held = (port, socket) }
            }
            let (port, socket) = try #require(held, "a loopback port to hold")
            defer { close(socket) }
            let coordinator = try ClusterTests.Background(["coordinator", "--config", config.path, "--listen", "tcp://127.0.0.1:\(port)", "--dashboard", "off"],
                                                          log: dir.appendingPathComponent("coordinator.log"))
            defer { coordinator.kill9() }
            #expect(coordinator.wait(seconds: 60), "the coordinator exits: \(coordinator.output)")
            #expect(coordinator.status.map { $0 != 0 } == true, "with a failure status")
            #expect(coordinator.output.contains("cannot listen on tcp://127.0.0.1:\(port)") && coordinator.output.contains("Address already in use"),
                    "\(coordinator.output)")
        }
    }
}
