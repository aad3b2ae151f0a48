import Foundation
import RefineryStore
import Testing

/// Test hosts in network namespaces joined by veth pairs (`ip netns`, root only).
enum TestNetwork {
    /// Runs `ip ARGS`; true when it succeeded.
    @discardableResult
    static func ip(_ arguments: [String]) -> Bool {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/sbin/ip")
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        do { try process.run() } catch { return false }
        process.waitUntilExit()
        return process.terminationStatus == 0
    }

    /// Whether this machine lets the tests make namespaces and veth pairs (root, iproute2, kernel support).
    static let available: Bool = {
        guard FileManager.default.isExecutableFile(atPath: "/usr/sbin/ip") else { return false }
        let name = "rfy-probe-\(getpid())"
        defer { ip(["netns", "del", name]) }
        return ip(["netns", "add", name]) && ip(["netns", "exec", name, "ip", "link", "set", "lo", "up"])
            && ip(["-n", name, "link", "add", "rfy-a", "type", "veth", "peer", "name", "rfy-b"])
    }()
}

/// The coordinator and two workers on three "hosts": one worker's link is cut for longer than
/// the lease timeout and then restored; the run completes with nothing lost or duplicated.
@Suite(.serialized) struct NetworkPartitionTests {
    @Test(.enabled(if: TestNetwork.available, "needs root, iproute2 and kernel support to create network namespaces and veth pairs (ip netns add, ip link add … type veth); not available here"))
    func aWorkerCutOffLongerThanItsLeaseRejoinsAndTheRunCompletesExactly() async throws {
        try await offThePool {
            let (dir, articles) = try ClusterTests.uninterruptedRun(articles: 60, train: false)

            // Hosts: c (coordinator and mock LLM), w1 and w2; veth pairs c–w1 (10.231.1.0/24) and c–w2 (10.231.2.0/24).
            let tag = String(getpid() % 100_000)
            let c = "rfy-c-\(tag)", w1 = "rfy-w1-\(tag)", w2 = "rfy-w2-\(tag)"
            defer { for ns in [c, w1, w2] { TestNetwork.ip(["netns", "del", ns]) } }
            for ns in [c, w1, w2] {
                #expect(TestNetwork.ip(["netns", "add", ns]))
                TestNetwork.ip(["-n", ns, "link", "set", "lo", "up"])
            }
            for (index, ns) in [w1, w2].enumerated() {
                let n = index + 1
                let hostSide = "rc\(n)-\(tag)", workerSide = "rw\(n)-\(tag)"
                #expect(TestNetwork.ip(["link", "add", hostSide, "netns", c, "type", "veth", "peer", "name", workerSide, "netns", ns]))
                #expect(TestNetwork.ip(["-n", c, "addr", "add", "10.231.\(n).1/24", "dev", hostSide]))
                #expect(TestNetwork.ip(["-n", ns, "addr", "add", "10.231.\(n).2/24", "dev", workerSide]))
                #expect(TestNetwork.ip(["-n", c, "link", "set", hostSide, "up"]))
                #expect(TestNetwork.ip(["-n", ns, "link", "set", workerSide, "up"]))
                #expect(TestNetwork.ip(["-n", ns, "route", "add", "default", "via", "10.231.\(n).1"]))
            }
            let executable = try CommandLineTests.executable().path
            func inside(_ ns: String, _ arguments: [String], log: String) throws -> ClusterTests.Background {
                try ClusterTests.Background(arguments, log: dir.appendingPathComponent(log), executable: "/usr/sbin/ip",
                                            prefix: ["netns", "exec", ns, executable])
            }
            // The mock LLM on host c, reachable from both workers at 10.231.1.1.
            let port = FreePort.pick()
            let mock = try inside(c, ["mock-llm", "--host", "0.0.0.0", "--port", String(port), "--latency-ms", "300"], log: "mock.log")
            Thread.sleep(forTimeInterval: 1)
            let remote = try ClusterTests.Mock.remote(base: "http://10.231.1.1:\(port)/v1")
            let config = try ClusterTests.config(dir: dir, name: "part", articles: articles, mock: remote, train: false)
            let zmqPort = port + 1
            let coordinator = try inside(c, ["coordinator", "--config", config.path, "--listen", "tcp://*:\(zmqPort)", "--insecure"], log: "c.log")
            let one = try inside(w1, ["worker", "--coordinator", "tcp://10.231.1.1:\(zmqPort)", "--slots", "2", "--name", "cut"], log: "w1.log")
            let two = try inside(w2, ["worker", "--coordinator", "tcp://10.231.2.1:\(zmqPort)", "--slots", "2", "--name", "steady"], log: "w2.log")
            let state = dir.appendingPathComponent("part.db").path
            let until = Date().addingTimeInterval(60)
            while Date() < until {
                Thread.sleep(forTimeInterval: 0.1)
                if let store = try? RunStore(path: state, readOnly: true), let workers = try? store.workers(),
                   workers.first(where: { $0.id == "cut" }).map({ $0.tasksDone >= 1 }) == true { break }
            }
            // Cut w1 off for longer than its lease lasts without heartbeats (3 × 1 s), then restore it.
            #expect(TestNetwork.ip(["-n", c, "link", "set", "rc1-\(tag)", "down"]))
            Thread.sleep(forTimeInterval: 6)
            #expect(TestNetwork.ip(["-n", c, "link", "set", "rc1-\(tag)", "up"]))
            #expect(coordinator.wait(seconds: 120), "the run completes")
            #expect(coordinator.status == 0, "\(coordinator.output)")
            #expect(coordinator.output.contains("worker cut lost"), "the cut worker's leases ended: \(coordinator.output)")
            #expect(coordinator.output.components(separatedBy: "worker cut joined").count == 3, "the cut worker came back: \(coordinator.output)")
            #expect(two.wait(seconds: 20))
            _ = one.wait(seconds: 20)
            mock.kill9()
            #expect(ClusterTests.read(dir.appendingPathComponent("part-data.jsonl").path) == ClusterTests.read(dir.appendingPathComponent("ref-data.jsonl").path),
                    "the dataset equals the uninterrupted run's")
            let store = try RunStore(path: state, readOnly: true)
            let chunks = try store.allChunks()
            #expect(!chunks.isEmpty && chunks.allSatisfy { $0.status == .done }, "nothing lost")
            #expect(try store.samples().count == chunks.count * 5, "nothing duplicated")
        }
    }
}
