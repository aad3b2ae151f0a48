import Foundation
import RefineryCore
import RefineryLLM
import RefineryMockLLM
import RefineryText
import Testing

/// The OpenAI-compatible client against the real mock server over HTTP on loopback, and the
/// retry and limiter rules it relies on.
@Suite struct LLMClientTests {
    static func startMock(_ options: MockLLMOptions) async throws -> (String, MockLLMState, Task<Void, Error>) {
        try await MockLLMServer.start(options)
    }

    static func request() -> ChatRequest {
        ChatRequest(model: "mock-model", messages: [ChatMessage(role: "user", content: "Extract: The sky is blue because of Rayleigh scattering.")],
                    temperature: 0.7, maxTokens: 400, responseFormat: .jsonObject)
    }

    @Test func aRequestCarriesJSONModeAndTheReplyCarriesUsage() async throws {
        let body = Self.request().json
        #expect(body["response_format"]?["type"]?.stringValue == "json_object")
        #expect(body["max_tokens"]?.intValue == 400 && body["model"]?.stringValue == "mock-model")
        let (url, state, server) = try await Self.startMock(MockLLMOptions())
        defer { server.cancel() }
        // A generous timeout: these tests are not about timeouts, and the whole parallel suite once
        // held this one past 10 s on a loaded machine.
        let reply = try await LLMClient(endpoint: LLMEndpoint(baseURL: url, apiKey: "k", timeout: 60)).complete(Self.request())
        #expect(reply.finishReason == "stop" && reply.promptTokens > 0 && reply.completionTokens > 0)
        #expect((try? JSONValue.parse(reply.content)) != nil, "JSON mode returns JSON: \(reply.content.prefix(200))")
        #expect(await state.requests == 1)
    }

    @Test func aWrongKeyIsAnAuthenticationErrorThatNamesNoKey() async throws {
        var options = MockLLMOptions()
        options.requiredKey = "right-key"
        let (url, _, server) = try await Self.startMock(options)
        defer { server.cancel() }
        do {
            _ = try await LLMClient(endpoint: LLMEndpoint(baseURL: url, apiKey: "wrong-key-123", timeout: 60)).complete(Self.request())
            Issue.record("a wrong key must fail")
        } catch {
            guard case .authentication = error else { Issue.record("expected an authentication error, got \(error)"); return }
            #expect(!error.isRetryable && !error.description.contains("wrong-key-123"))
        }
    }

    @Test func retryDelaysGrowAreCappedAndHonourRetryAfter() {
        let policy = RetryPolicy(maxAttempts: 8, baseDelay: 0.5, maxDelay: 4)
        for attempt in 1...8 {
            let delay = policy.delay(afterAttempt: attempt, error: .timeout)
            let cap = min(4, 0.5 * pow(2, Double(attempt - 1)))
            #expect(delay >= cap * 0.5 && delay <= cap, "attempt \(attempt): \(delay)")
        }
        #expect(policy.delay(afterAttempt: 1, error: .rateLimited(retryAfter: 7)) >= 7)
        #expect(LLMError.rateLimited(retryAfter: nil).isRetryable && !LLMError.quotaExhausted("x").isRetryable)
    }

    @Test func theLimiterNeverExceedsItsSlots() async throws {
        let limiter = RateLimiter(slots: 3)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<24 {
                group.addTask {
                    try await limiter.acquire(estimatedTokens: 10, maxCost: 0)
                    try await Task.sleep(nanoseconds: 2_000_000)
                    await limiter.release(maxCost: 0, actualCost: 0)
                }
            }
            try await group.waitForAll()
        }
        #expect(await limiter.peakInFlight == 3 && limiter.slots == 3)
        #expect(await limiter.grantedCount == 24)
    }
}
