import ArgumentParser
import Foundation
import RefineryCore
import RefineryWatch

/// `refinery dashboard`: a run's metrics and status over HTTP, from its state file — running,
/// finished or interrupted.
struct DashboardCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dashboard",
        abstract: "Serve a run's Prometheus metrics (/metrics) and status (/api/status) from its state file.",
        discussion: "Beyond 127.0.0.1 a token is required: set REFINERY_DASHBOARD_TOKEN; requests send \"Authorization: Bearer TOKEN\".")

    @Option(help: "SQLite state file of the run.") var state: String
    @Option(help: "Address and port to listen on (port 0 picks a free one and prints it).") var listen: String = "127.0.0.1:8080"

    func run() async throws {
        guard let colon = listen.lastIndex(of: ":"), let port = Int(listen[listen.index(after: colon)...]), (0...65535).contains(port) else {
            throw CommandError("--listen \(listen): expected HOST:PORT, e.g. 127.0.0.1:8080")
        }
        let host = String(listen[..<colon])
        let token = ProcessInfo.processInfo.environment["REFINERY_DASHBOARD_TOKEN"].flatMap { $0.isEmpty ? nil : $0 }
        do {
            try await DashboardServer.run(statePath: state, host: host, port: port, token: token) { bound in
                Output.line("dashboard listening on http://\(host):\(bound) (/metrics, /api/status)")
            }
        } catch let error as CoreError {
            throw CommandError(error.message)
        }
    }
}
