import Foundation
import HTTPTypes
import Hummingbird
import Logging
import RefineryCore
import RefineryHTTP
import RefineryPipeline
import RefineryStore
import ServiceLifecycle
import UnixSignals

/// Serves a run's state over HTTP from its state file (read-only, through one connection on a
/// thread of its own — `StateReader` — so a request never waits on, or holds up, the coordinator): `/` the live page (`DashboardPage`),
/// `/metrics` in the Prometheus text format (`RunMetrics`), `/api/status` as `status --json`,
/// `/api/train` the training log's rows (each with the `time` it was written, when known). With a `token`, every request must
/// carry it (`Authorization: Bearer TOKEN` or `?token=TOKEN`); `DashboardServer.check` refuses to
/// bind beyond loopback without one. Nothing served contains an API key: the state holds none.
public enum DashboardServer {
    /// Refuses a non-loopback `host` without a token.
    public static func check(host: String, token: String?) throws {
        try HTTPAccess.check(host: host, token: token, variable: "REFINERY_DASHBOARD_TOKEN", server: "the dashboard")
    }

    /// Serves until SIGINT or SIGTERM (then stops gracefully: requests in flight are answered);
    /// `onRunning` receives the bound port (useful with port 0). A missing state file, or a file
    /// that is not a Refinery state, is refused at once.
    public static func run(statePath: String, host: String, port: Int, token: String?,
                           onRunning: @escaping @Sendable (Int) async -> Void = { _ in }) async throws {
        try check(host: host, token: token)
        guard FileManager.default.fileExists(atPath: statePath) else {
            throw CoreError("no state file at \(statePath): give the --state of a run (its data.state)")
        }
        // A file of another application, or not SQLite at all, is refused now rather than
        // answered with errors later.
        do { _ = try RunStore(path: statePath, readOnly: true) } catch { throw CoreError("\(error)") }
        let group = try serviceGroup(statePath: statePath, host: host, port: port, token: token,
                                     signals: [.sigterm, .sigint], onRunning: onRunning)
        try await group.run()
    }

    /// Starts serving next to a running command (a coordinator's own dashboard), before the run
    /// has created its state file: until then the data routes answer 503. Signals stay with the
    /// process; `EmbeddedDashboard.stop` ends it. A server that cannot start reports through `onFailure`.
    public static func start(statePath: String, host: String, port: Int, token: String?,
                             onRunning: @escaping @Sendable (Int) async -> Void,
                             onFailure: @escaping @Sendable (any Error) -> Void) throws -> EmbeddedDashboard {
        let group = try serviceGroup(statePath: statePath, host: host, port: port, token: token, signals: [], onRunning: onRunning)
        let task = Task {
            do { try await group.run() } catch is CancellationError {} catch { onFailure(error) }
        }
        return EmbeddedDashboard(group: group, task: task)
    }

    private static func serviceGroup(statePath: String, host: String, port: Int, token: String?, signals: [UnixSignal],
                                     onRunning: @escaping @Sendable (Int) async -> Void) throws -> ServiceGroup {
        try check(host: host, token: token)
        let reader = StateReader(path: statePath)
        let router = Router()
        router.add(middleware: BearerTokenMiddleware(token: token))
        router.add(middleware: StateFileMiddleware())
        router.get("metrics") { _, _ -> Response in
            let status = try await reader.read { try RunStatus.read(store: $0) }
            return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                            body: .init(byteBuffer: ByteBuffer(string: RunMetrics.text(of: status))))
        }
        router.get("/") { _, _ -> Response in
            Response(status: .ok, headers: [.contentType: "text/html; charset=utf-8"], body: .init(byteBuffer: ByteBuffer(string: DashboardPage.html)))
        }
        router.get("api/train") { _, _ -> Response in
            let log = try await reader.read { try $0.timedTrainLog() }
            let rows = log.compactMap { entry -> JSONValue? in
                guard case let .object(fields)? = try? JSONValue.parse(entry.row) else { return nil }
                return .object(fields + (entry.loggedAt.map { [("time", JSONValue.double($0))] } ?? []))
            }
            return Response(status: .ok, headers: [.contentType: "application/json"],
                            body: .init(byteBuffer: ByteBuffer(string: JSONValue.array(rows).compactText)))
        }
        router.get("api/status") { _, _ -> Response in
            let status = try await reader.read { try RunStatus.read(store: $0) }
            return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: status.json)))
        }
        var logger = Logger(label: "refinery-dashboard")
        logger.logLevel = .warning
        let app = Application(router: router, configuration: .init(address: .hostname(host, port: port), serverName: "refinery-dashboard"),
                              onServerRunning: { channel in await onRunning(channel.localAddress?.port ?? port) }, logger: logger)
        return ServiceGroup(configuration: .init(services: [app], gracefulShutdownSignals: signals, logger: logger))
    }
}

/// A dashboard served next to a running command.
public struct EmbeddedDashboard: Sendable {
    let group: ServiceGroup
    let task: Task<Void, Never>

    /// Stops gracefully: no new connections, the requests in flight are answered, then the server
    /// ends. One still running after `seconds` (a read stuck on the state file) is cancelled.
    public func stop(within seconds: Double = 10) async {
        await group.triggerGracefulShutdown()
        let task = self.task
        let deadline = Task {
            try await Task.sleep(for: .seconds(seconds))
            task.cancel()
        }
        await task.value
        deadline.cancel()
    }
}

/// Answers 503 (with Retry-After) for the data routes while the run's state file does not exist
/// yet or is still being set up by the run; any other failure is logged with its route (the
/// reason behind the 500 the client gets).
struct StateFileMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard request.uri.path != "/" else { return try await next(request, context) }
        do {
            return try await next(request, context)
        } catch let notReady as StateNotReady {
            return Response(status: .serviceUnavailable, headers: [.retryAfter: "2"], body: .init(byteBuffer: ByteBuffer(string: notReady.reason + "\n")))
        } catch {
            context.logger.error("\(request.uri.path) failed: \(error)")
            throw error
        }
    }
}
