/// What went wrong with an LLM call, classified for the retry policy. Messages never contain the API key.
public enum LLMError: Error, Sendable, Equatable, CustomStringConvertible {
    /// 429 that is not about quota: retry after the server's delay, if it gave one.
    case rateLimited(retryAfter: Double?)
    /// 5xx.
    case server(status: Int, message: String)
    /// No answer in time.
    case timeout
    /// The connection failed or dropped.
    case connection(String)
    /// 401/403: the key is wrong or lacks access. Stops the run.
    case authentication(String)
    /// The account has no quota or credit left. Stops the run.
    case quotaExhausted(String)
    /// 4xx other than the above (unknown model, bad parameters). Stops the run.
    case badRequest(status: Int, message: String)
    /// The body is not a chat-completions reply.
    case malformedResponse(String)
    /// The run's dollar budget has no room for the next call (`needed`: the most it may cost).
    case budgetExhausted(spent: Double, limit: Double, needed: Double)

    /// Worth another attempt after a pause.
    public var isRetryable: Bool {
        switch self {
        case .rateLimited, .server, .timeout, .connection, .malformedResponse: return true
        case .authentication, .quotaExhausted, .badRequest, .budgetExhausted: return false
        }
    }

    public var description: String {
        switch self {
        case let .rateLimited(retryAfter): return "rate limited (429)" + (retryAfter.map { ", retry after \($0)s" } ?? "")
        case let .server(status, message): return "server error \(status): \(message)"
        case .timeout: return "the request timed out"
        case let .connection(message): return "connection failed: \(message)"
        case let .authentication(message): return "the API key was refused (\(message)); check the key in the environment variable named by --api-key-env"
        case let .quotaExhausted(message): return "the account's quota is exhausted (\(message)); add credit or use another key — not retrying"
        case let .badRequest(status, message): return "the server refused the request (\(status)): \(message); check --model and --base-url"
        case let .malformedResponse(message): return "malformed reply: \(message)"
        case let .budgetExhausted(spent, limit, needed):
            return String(format: "the dollar budget has no room for another call: $%.4f of $%.4f spent, and a call may cost up to $%.4f "
                          + "(its prompt and max_tokens at the given prices); raise the budget to continue", spent, limit, needed)
        }
    }
}
