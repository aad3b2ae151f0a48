import Foundation
import Glibc
import RefineryLLM
import RefineryText
import Testing

/// A server that refuses the connection (nothing listening): each attempt fails at once, and
/// says where it tried to connect.
@Suite struct RefusedConnectionTests {
    /// A loopback port bound but not listening, held until the descriptor is closed: connecting
    /// to it is refused, and no other process can start listening on it meanwhile.
    static func refusingPort() throws -> (descriptor: Int32, port: Int) {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        try #require(descriptor >= 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { generic in
                bind(descriptor, generic, length) == 0 && getsockname(descriptor, generic, &length) == 0
            }
        }
        try #require(bound, "bind: errno \(errno)")
        return (descriptor, Int(UInt16(bigEndian: address.sin_port)))
    }

    @Test func aRefusedConnectionFailsTheAttemptAtOnceAndNamesTheURL() async throws {
        let (descriptor, port) = try Self.refusingPort()
        defer { close(descriptor) }
        let url = "http://127.0.0.1:\(port)/v1"
        // The attempt's timeout is a minute: before, the HTTP pool re-tried the refused connection
        // until that deadline, so one attempt took the whole minute.
        let client = LLMClient(endpoint: LLMEndpoint(baseURL: url, apiKey: nil, timeout: 60))
        // Timed on a queue of its own: in the full suite both threads of the cooperative pool can
        // be busy with numeric tests for seconds, and the time to get one back is not the client's.
        let (outcome, elapsed) = await withTaskExecutorPreference(OwnQueueExecutor()) { () async -> (Result<ChatReply, LLMError>, Double) in
            let started = Date()
            do {
                let reply = try await client.complete(ChatRequest(model: "m", messages: [ChatMessage(role: "user", content: "hi")],
                                                                  temperature: 0, maxTokens: 8, responseFormat: .text))
                return (.success(reply), Date().timeIntervalSince(started))
            } catch let error as LLMError {
                return (.failure(error), Date().timeIntervalSince(started))
            } catch {
                return (.failure(.connection("not an LLMError: \(error)")), Date().timeIntervalSince(started))
            }
        }
        switch outcome {
        case .success:
            Issue.record("a refused connection must fail")
        case let .failure(error):
            guard case .connection = error else { Issue.record("expected a connection error, got \(error)"); return }
            #expect(error.isRetryable)
            #expect(elapsed < 15, "the attempt took \(elapsed) s")
            #expect(error.description.contains(url) && error.description.contains("refused"), "\(error.description)")
        }
    }

    @Test func retriedAttemptsAreToldAndTheFailureCountsThem() async throws {
        let (descriptor, port) = try Self.refusingPort()
        defer { close(descriptor) }
        let notices = NoticeLog()
        let maker = LLMCallMaker(limiter: RateLimiter(slots: 1), retry: RetryPolicy(maxAttempts: 3, baseDelay: 0.01, maxDelay: 0.02),
                                 timeout: 60, key: { _ in nil }, onRetry: { error, attempt, delay in notices.add(error, attempt, delay) })
        let call = LLMCall(baseURL: "http://127.0.0.1:\(port)/v1",
                           request: ChatRequest(model: "m", messages: [ChatMessage(role: "user", content: "hi")], temperature: 0,
                                                maxTokens: 8, responseFormat: .text))
        let result = await maker.make(call)
        #expect(result.status == .failed && result.attempts == 3)
        #expect(result.error?.hasPrefix("3 attempts failed, the last with: connection failed") == true, "\(result.error ?? "")")
        // Attempts 1 and 2 are retried; the third is the last.
        #expect(notices.attempts == [1, 2])
        #expect(notices.delays.allSatisfy { $0 > 0 && $0 <= 0.02 })
    }
}

/// A task executor running its jobs on a serial queue of its own (never a cooperative-pool thread).
final class OwnQueueExecutor: TaskExecutor {
    private let queue = DispatchQueue(label: "refinery.tests.refused-connection")

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        queue.async { job.runSynchronously(on: self.asUnownedTaskExecutor()) }
    }
}

/// What `onRetry` was told, from any thread.
final class NoticeLog: @unchecked Sendable {
    private let lock = NSLock()
    private var entries: [(attempt: Int, delay: Double)] = []

    func add(_ error: LLMError, _ attempt: Int, _ delay: Double) {
        lock.lock()
        defer { lock.unlock() }
        entries.append((attempt, delay))
    }

    var attempts: [Int] { lock.lock(); defer { lock.unlock() }; return entries.map(\.attempt) }
    var delays: [Double] { lock.lock(); defer { lock.unlock() }; return entries.map(\.delay) }
}
