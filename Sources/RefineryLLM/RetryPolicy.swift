import Foundation

/// Exponential backoff with jitter for retryable LLM errors, honouring `Retry-After`.
public struct RetryPolicy: Sendable {
    /// Attempts per call for transport-level errors (429, 5xx, timeouts, dropped connections).
    public var maxAttempts: Int
    public var baseDelay: Double
    public var maxDelay: Double

    public init(maxAttempts: Int = 8, baseDelay: Double = 0.5, maxDelay: Double = 32) {
        self.maxAttempts = maxAttempts
        self.baseDelay = baseDelay
        self.maxDelay = maxDelay
    }

    /// Seconds to wait before attempt `attempt + 1` (attempt counts from 1) after `error`.
    public func delay(afterAttempt attempt: Int, error: LLMError) -> Double {
        let exponential = min(maxDelay, baseDelay * pow(2, Double(max(0, attempt - 1))))
        let jittered = exponential * Double.random(in: 0.5...1.0)
        if case let .rateLimited(retryAfter?) = error { return max(retryAfter, jittered * 0.25) }
        return jittered
    }
}

/// Prices per million tokens, for usage accounting and the dollar budget.
public struct Price: Sendable, Equatable {
    public var inputPerMillion: Double
    public var outputPerMillion: Double

    public init(inputPerMillion: Double = 0, outputPerMillion: Double = 0) {
        self.inputPerMillion = inputPerMillion
        self.outputPerMillion = outputPerMillion
    }

    public func cost(promptTokens: Int, completionTokens: Int) -> Double {
        (Double(promptTokens) * inputPerMillion + Double(completionTokens) * outputPerMillion) / 1_000_000
    }
}
