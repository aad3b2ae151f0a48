import ArgumentParser
import Foundation
import RefineryWatch

/// `--dashboard HOST:PORT` (or `off`) of `coordinator` and `run`: the run's live page and
/// `/metrics`, served next to the coordinator from its state file.
struct DashboardOption: ParsableArguments {
    @Option(help: "Serve the live dashboard and /metrics here (HOST:PORT, port 0 picks one; off: none). Beyond 127.0.0.1, set REFINERY_DASHBOARD_TOKEN.")
    var dashboard: String = "127.0.0.1:8080"

    /// The host and port, nil for `off`; refuses a malformed value or a public address without a token.
    func address() throws -> (host: String, port: Int)? {
        if dashboard == "off" { return nil }
        guard let colon = dashboard.lastIndex(of: ":"), let port = Int(dashboard[dashboard.index(after: colon)...]), (0...65535).contains(port) else {
            throw CommandError("--dashboard \(dashboard): expected HOST:PORT (e.g. 127.0.0.1:8080) or off")
        }
        let host = String(dashboard[..<colon])
        do { try DashboardServer.check(host: host, token: Self.token) } catch { throw CommandError("\(error)") }
        return (host, port)
    }

    static var token: String? { ProcessInfo.processInfo.environment["REFINERY_DASHBOARD_TOKEN"].flatMap { $0.isEmpty ? nil : $0 } }

    /// Starts serving `statePath` in the background; a port that cannot be bound is reported and the
    /// run goes on without a dashboard. `RunningDashboard.stop` ends it.
    func start(statePath: String) throws -> RunningDashboard? {
        guard let (host, port) = try address() else { return nil }
        do {
            let dashboard = try DashboardServer.start(statePath: statePath, host: host, port: port, token: Self.token) { bound in
                Output.progress("[dashboard] http://\(host):\(bound)/ (live page), /metrics\n")
            } onFailure: { error in
                Output.progress("[dashboard] not served (\(error)); the run goes on without it\n")
            }
            return RunningDashboard(dashboard: dashboard)
        } catch {
            throw CommandError("\(error)")
        }
    }
}

/// The dashboard of a synchronous command (`run`, `coordinator`), stopped from its thread.
final class RunningDashboard: Sendable {
    let dashboard: EmbeddedDashboard

    init(dashboard: EmbeddedDashboard) {
        self.dashboard = dashboard
    }

    /// Stops the server gracefully (requests in flight are answered first) and waits for it, so
    /// the process never exits in the middle of a response.
    func stop() {
        let stopped = DispatchSemaphore(value: 0)
        let dashboard = self.dashboard
        Task {
            await dashboard.stop()
            stopped.signal()
        }
        if stopped.wait(timeout: .now() + 20) == .timedOut {
            Output.progress("[dashboard] did not stop within 20 s; exiting without it\n")
        }
    }
}
