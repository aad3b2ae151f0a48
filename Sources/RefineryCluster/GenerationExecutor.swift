import Foundation
import RefineryData
import RefineryLLM
import RefineryStore

/// Collects a chunk's requests and outcome on a worker, for the coordinator to commit.
final class RecordingLedger: ChunkLedger, @unchecked Sendable {
    private let lock = NSLock()
    private var requests: [Refinery_Cluster_RequestRecord] = []
    private var outcome: (done: Bool, pairs: [(String, String)], reason: String, raw: String)?

    func beginRequest(chunkID: Int64, promptHash: String) throws -> Int64 {
        lock.lock()
        defer { lock.unlock() }
        var record = Refinery_Cluster_RequestRecord()
        record.promptHash = promptHash
        record.status = "sent"
        record.startedAt = Date().timeIntervalSince1970
        requests.append(record)
        return Int64(requests.count - 1)
    }

    private func finish(_ index: Int64, status: String, error: String?, errorClass: RequestErrorClass?, rawReply: String?, usage: Usage) {
        lock.lock()
        defer { lock.unlock() }
        guard requests.indices.contains(Int(index)) else { return }
        requests[Int(index)].status = status
        requests[Int(index)].error = error ?? ""
        requests[Int(index)].errorClass = errorClass?.rawValue ?? ""
        requests[Int(index)].rawReply = rawReply ?? ""
        requests[Int(index)].promptTokens = Int64(usage.promptTokens)
        requests[Int(index)].completionTokens = Int64(usage.completionTokens)
        requests[Int(index)].cost = usage.cost
        requests[Int(index)].finishedAt = Date().timeIntervalSince1970
    }

    func failRequest(_ requestID: Int64, error: String, errorClass: RequestErrorClass, rawReply: String?, usage: Usage) throws {
        finish(requestID, status: "failed", error: error, errorClass: errorClass, rawReply: rawReply, usage: usage)
    }

    func completeChunk(_ chunkID: Int64, requestID: Int64, rawReply: String, usage: Usage, pairs: [(String, String)]) throws {
        finish(requestID, status: "done", error: nil, errorClass: nil, rawReply: rawReply, usage: usage)
        lock.lock()
        outcome = (true, pairs, "", rawReply)
        lock.unlock()
    }

    func failChunk(_ chunkID: Int64, reason: String, rawReply: String?) throws {
        lock.lock()
        outcome = (false, [], reason, rawReply ?? "")
        lock.unlock()
    }

    /// The result message for the coordinator.
    func result(lease: Refinery_Cluster_Lease, chunkID: Int64, stopped: String?) -> Refinery_Cluster_GenerateResult {
        lock.lock()
        defer { lock.unlock() }
        var result = Refinery_Cluster_GenerateResult()
        result.lease = lease
        result.chunkID = chunkID
        result.requests = requests
        if let stopped {
            result.outcome = "stopped"
            result.reason = stopped
        } else if let outcome {
            result.outcome = outcome.done ? "done" : "failed"
            result.pairs = outcome.pairs.map { pair in
                var p = Refinery_Cluster_Pair()
                p.instruction = pair.0
                p.answer = pair.1
                return p
            }
            result.reason = outcome.reason
            result.rawReply = outcome.raw
        } else {
            result.outcome = "failed"
            result.reason = "the worker ended the chunk without an outcome"
        }
        return result
    }
}

/// Runs generation tasks on a worker: at most `slots` LLM calls in flight (the limiter), each
/// chunk taken to its end by the same `ChunkProcessor` as a one-machine run.
final class GenerationExecutor: GenerationTaskRunner {
    let processor: ChunkProcessor

    init(settings: GenerationWireSettings, apiKey: String?, slots: Int) {
        let client = LLMClient(endpoint: LLMEndpoint(baseURL: settings.baseURL, apiKey: apiKey, timeout: settings.timeout))
        processor = ChunkProcessor(client: client, limiter: RateLimiter(slots: slots), settings: settings.settings)
    }

    /// Starts the chunk; `deliver` gets the result message when it ends.
    func start(lease: Lease, chunkID: Int64, text: String, deliver: @escaping @Sendable (Refinery_Cluster_Envelope.OneOf_Body) -> Void) {
        let processor = processor
        Task {
            let ledger = RecordingLedger()
            var stopped: String? = nil
            do {
                _ = try await processor.process(chunkID: chunkID, text: text, ledger: ledger)
            } catch let error as GenerationStopped {
                stopped = error.description
            } catch {
                stopped = "the worker failed: \(error)"
            }
            deliver(.generateResult(ledger.result(lease: lease.message, chunkID: chunkID, stopped: stopped)))
        }
    }
}
