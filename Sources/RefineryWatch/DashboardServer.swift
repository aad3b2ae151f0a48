import Foundation
import HTTPTypes
import Hummingbird
import Logging
import RefineryCore
import RefineryHTTP
import RefineryPipeline
import RefineryStore

/// Serves a run's state over HTTP from its state file (read-only, a fresh read per request, so a
/// request never waits on — or holds up — the coordinator): `/` the live page (`DashboardPage`),
/// `/metrics` in the Prometheus text format (`RunMetrics`), `/api/status` as `status --json`,
/// `/api/train` the training log's rows (each with the `time` it was written, when known). With a `token`, every request must
/// carry it (`Authorization: Bearer TOKEN` or `?token=TOKEN`); `DashboardServer.check` refuses to
/// bind beyond loopback without one. Nothing served contains an API key: the state holds none.
public enum DashboardServer {
    /// Refuses a non-loopback `host` without a token.
    public static func check(host: String, token: String?) throws {
        try HTTPAccess.check(host: host, token: token, variable: "REFINERY_DASHBOARD_TOKEN", server: "the dashboard")
    }

    /// Runs until the task is cancelled; `onRunning` receives the bound port (useful with port 0).
    /// `requireState: false` (a coordinator's own dashboard) starts before the run creates its state
    /// file; until then requests get 503, and the server leaves SIGINT and SIGTERM to the process
    /// (standalone, they stop the server gracefully).
    public static func run(statePath: String, host: String, port: Int, token: String?, requireState: Bool = true,
                           onRunning: @escaping @Sendable (Int) async -> Void = { _ in }) async throws {
        try check(host: host, token: token)
        guard !requireState || FileManager.default.fileExists(atPath: statePath) else {
            throw CoreError("no state file at \(statePath): give the --state of a run (its data.state)")
        }
        if requireState {
            // A file of another application, or not SQLite at all, is refused now rather than
            // answered with errors later.
            do { _ = try RunStore(path: statePath, readOnly: true) } catch { throw CoreError("\(error)") }
        }
        let router = Router()
        router.add(middleware: BearerTokenMiddleware(token: token))
        router.add(middleware: StateFileMiddleware(path: statePath))
        router.get("metrics") { _, _ -> Response in
            let status = try RunStatus.read(path: statePath)
            return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                            body: .init(byteBuffer: ByteBuffer(string: RunMetrics.text(of: status))))
        }
        router.get("/") { _, _ -> Response in
            Response(status: .ok, headers: [.contentType: "text/html; charset=utf-8"], body: .init(byteBuffer: ByteBuffer(string: DashboardPage.html)))
        }
        router.get("api/train") { _, _ -> Response in
            let rows = try RunStore(path: statePath, readOnly: true).timedTrainLog().compactMap { entry -> JSONValue? in
                guard case let .object(fields)? = try? JSONValue.parse(entry.row) else { return nil }
                return .object(fields + (entry.loggedAt.map { [("time", JSONValue.double($0))] } ?? []))
            }
            return Response(status: .ok, headers: [.contentType: "application/json"],
                            body: .init(byteBuffer: ByteBuffer(string: JSONValue.array(rows).compactText)))
        }
        router.get("api/status") { _, _ -> Response in
            let status = try RunStatus.read(path: statePath)
            return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: status.json)))
        }
        var logger = Logger(label: "refinery-dashboard")
        logger.logLevel = .warning
        let app = Application(router: router, configuration: .init(address: .hostname(host, port: port), serverName: "refinery-dashboard"),
                              onServerRunning: { channel in await onRunning(channel.localAddress?.port ?? port) }, logger: logger)
        try await app.runService(gracefulShutdownSignals: requireState ? [.sigterm, .sigint] : [])
    }
}

/// Answers 503 for the data routes while the run's state file does not exist yet, or exists but
/// is still being set up by the run (a read that fails then is the race, not an error).
struct StateFileMiddleware<Context: RequestContext>: RouterMiddleware {
    let path: String

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard request.uri.path != "/" else { return try await next(request, context) }
        guard FileManager.default.fileExists(atPath: path) else { return notYet("the run has not created its state file yet") }
        do {
            return try await next(request, context)
        } catch {
            guard RunStore.isReady(path: path) else { return notYet("the run is still setting up its state file") }
            // Said where the dashboard's output goes: the reason behind the 500 the client gets.
            context.logger.error("\(request.uri.path) failed: \(error)")
            throw error
        }
    }

    private func notYet(_ reason: String) -> Response {
        Response(status: .serviceUnavailable, headers: [.retryAfter: "2"], body: .init(byteBuffer: ByteBuffer(string: reason + "\n")))
    }
}
