/// Why an LLM request failed, in the few classes people act on differently: the dashboard,
/// `status` and `/metrics` count failures by these names (stored as the raw values).
public enum RequestErrorClass: String, Sendable, CaseIterable {
    /// 429: the endpoint's rate limit.
    case rateLimited = "rate_limited"
    /// 5xx from the endpoint.
    case serverError = "server_error"
    /// No answer in time.
    case timeout
    /// The connection failed or dropped.
    case connection
    /// The key was refused (401/403).
    case authentication
    /// The account has no quota or credit left.
    case quotaExhausted = "quota_exhausted"
    /// Another 4xx: unknown model, bad parameters.
    case badRequest = "bad_request"
    /// The body was not a chat-completions reply.
    case malformedResponse = "malformed_response"
    /// The run's dollar budget was spent.
    case budgetExhausted = "budget_exhausted"
    /// The reply stopped at `max_tokens` (`finish_reason: length`).
    case truncated
    /// The reply arrived but did not hold what was asked for (no valid pairs, no score).
    case invalidReply = "invalid_reply"
}

extension LLMError {
    /// The class this error is counted under.
    public var errorClass: RequestErrorClass {
        switch self {
        case .rateLimited: return .rateLimited
        case .server: return .serverError
        case .timeout: return .timeout
        case .connection: return .connection
        case .authentication: return .authentication
        case .quotaExhausted: return .quotaExhausted
        case .badRequest: return .badRequest
        case .malformedResponse: return .malformedResponse
        case .budgetExhausted: return .budgetExhausted
        }
    }
}
