import HTTPTypes
import Hummingbird
import RefineryCore

/// Who may use Refinery's HTTP servers (the dashboard, `refinery serve`): anyone on this machine
/// when bound to loopback; beyond it, only requests carrying the token.
public enum HTTPAccess {
    /// Whether `host` is this machine only.
    public static func isLoopback(_ host: String) -> Bool { host == "127.0.0.1" || host == "localhost" || host == "::1" }

    /// Refuses a non-loopback `host` without a token, naming the variable that sets it.
    public static func check(host: String, token: String?, variable: String, server: String) throws {
        if !isLoopback(host) && (token ?? "").isEmpty {
            throw CoreError("\(server) binds \(host), beyond this machine, so it needs a token: set \(variable) (requests then send it as \"Authorization: Bearer TOKEN\")")
        }
    }
}

/// Refuses requests without the token (when there is one) with 401: `Authorization: Bearer
/// TOKEN`, or `?token=TOKEN` in the address (for a page opened in a browser).
public struct BearerTokenMiddleware<Context: RequestContext>: RouterMiddleware {
    let token: String?

    public init(token: String?) { self.token = token }

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let token, !token.isEmpty else { return try await next(request, context) }
        let bearer = request.headers[.authorization] == "Bearer \(token)"
        let query = request.uri.queryParameters.get("token") == token
        guard bearer || query else {
            return Response(status: .unauthorized, headers: [.wwwAuthenticate: "Bearer"],
                            body: .init(byteBuffer: ByteBuffer(string: "a token is needed: send \"Authorization: Bearer TOKEN\"\n")))
        }
        return try await next(request, context)
    }
}
