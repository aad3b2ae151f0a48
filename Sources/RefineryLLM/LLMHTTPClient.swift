import AsyncHTTPClient

/// The process's one HTTP client for LLM endpoints (chat completions, embeddings).
///
/// `HTTPClient.shared` keeps re-trying a connection the server refuses until the request's
/// deadline, so a wrong port or a stopped server looked like a hang of the whole timeout (120 s
/// by default) per attempt, and eight attempts per call. Here a refused connection fails the
/// attempt at once and `RetryPolicy` decides, with its own backoff and a visible notice. A host
/// that never answers the handshake fails the attempt after `connectTimeoutSeconds`.
let llmHTTPClient: HTTPClient = {
    var configuration = HTTPClient.Configuration.singletonConfiguration
    configuration.connectionPool.retryConnectionEstablishment = false
    configuration.timeout.connect = .seconds(connectTimeoutSeconds)
    return HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
}()

/// Seconds a TCP (and TLS) handshake with an LLM endpoint may take before the attempt fails.
let connectTimeoutSeconds: Int64 = 20
