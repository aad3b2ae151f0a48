import Foundation
import RefineryLLM

/// Carries out LLM-call tasks on a worker; the result message goes to `deliver` when the call ends.
public protocol CallTaskRunner: AnyObject, Sendable {
    func start(lease: Lease, task: CallTaskSpec, deliver: @escaping @Sendable (Refinery_Cluster_Envelope.OneOf_Body) -> Void)
}

/// Makes curation calls on a worker: at most `slots` in flight (one limiter for all of them), each
/// retried by the policy its task carries, the key read from the environment variable the call
/// names (or the one the coordinator sent, for calls to the run's generation endpoint).
public final class CallExecutor: CallTaskRunner {
    let limiter: RateLimiter
    let key: @Sendable (LLMCall) -> String?

    /// `key`: the API key for a call (nil: none).
    public init(slots: Int, key: @escaping @Sendable (LLMCall) -> String?) {
        limiter = RateLimiter(slots: slots)
        self.key = key
    }

    public func start(lease: Lease, task: CallTaskSpec, deliver: @escaping @Sendable (Refinery_Cluster_Envelope.OneOf_Body) -> Void) {
        let call = task.call
        let resolved = key(call)
        let maker = LLMCallMaker(limiter: limiter, retry: task.retry, timeout: task.timeout, key: { _ in resolved })
        Task {
            let result = await maker.make(call)
            deliver(.callResult(Self.message(result, lease: lease, callID: task.callID)))
        }
    }

    static func message(_ result: LLMCallResult, lease: Lease, callID: Int64) -> Refinery_Cluster_CallResult {
        var message = Refinery_Cluster_CallResult()
        message.lease = lease.message
        message.callID = callID
        message.outcome = result.status.rawValue
        message.content = result.content
        message.finishReason = result.finishReason ?? ""
        message.error = result.error ?? ""
        message.errorClass = result.errorClass?.rawValue ?? ""
        message.promptTokens = Int64(result.promptTokens)
        message.completionTokens = Int64(result.completionTokens)
        message.cost = result.cost
        message.attempts = UInt32(clamping: result.attempts)
        return message
    }
}
