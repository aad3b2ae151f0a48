import Foundation
import RefineryModel
import RefineryText

/// Why a sequence ended, as the OpenAI API names it.
public enum FinishReason: String, Sendable {
    /// A stop token, a stop string, or a complete structured output.
    case stop
    /// `max_tokens`, or the model's context.
    case length
}

/// What a sequence tells its request.
public enum DecodeEvent: Sendable {
    case token(Int, logprob: Float?, top: [BatchDecoder.TokenLogprob])
    case finished(FinishReason)
    case failed(String)
}

/// One sequence to decode.
public struct DecodeRequest: Sendable {
    public var prompt: [Int]
    public var options: SamplingOptions
    public var constraint: (any TokenConstraint)?
    /// The LoRA adapter this sequence decodes with (nil: the base).
    public var adapter: LoRAAdapter?
    public var events: @Sendable (DecodeEvent) -> Void
}

/// The server's one decoding thread: sequences join a running batch (continuous batching, a KV
/// cache each) between steps and leave it when they end or are cancelled, so a new request
/// never waits for the batch to drain. At most `maxBatch` decode together; beyond that up to
/// `maxQueue` wait, and further requests are refused (the server answers 429).
public final class DecodeLoop: @unchecked Sendable {
    private let decoder: BatchDecoder
    private let condition = NSCondition()
    private var waiting: [(ticket: Int, request: DecodeRequest)] = []
    private var cancelled: Set<Int> = []
    private var active: [Int: (ticket: Int, request: DecodeRequest)] = [:]  // by decoder sequence id
    private var nextTicket = 0
    public let maxBatch: Int
    public let maxQueue: Int

    public init(model: LlamaModel, maxBatch: Int, maxQueue: Int) {
        decoder = BatchDecoder(model: model)
        self.maxBatch = maxBatch
        self.maxQueue = maxQueue
        let thread = Thread { [weak self] in self?.run() }
        thread.name = "refinery-decode"
        thread.stackSize = 8 << 20
        thread.start()
    }

    /// Queues `requests` together (the `n` choices of one API request); nil when the queue
    /// cannot take them all. Returns their tickets, for `cancel`.
    public func submit(_ requests: [DecodeRequest]) -> [Int]? {
        condition.lock()
        defer { condition.unlock() }
        guard waiting.count + active.count + requests.count <= maxBatch + maxQueue else { return nil }
        let tickets = requests.map { request -> Int in
            nextTicket += 1
            waiting.append((nextTicket, request))
            return nextTicket
        }
        condition.signal()
        return tickets
    }

    /// Ends the sequences of `tickets` (a client that went away, a stop string seen): they leave
    /// the batch before its next step.
    public func cancel(_ tickets: [Int]) {
        condition.lock()
        cancelled.formUnion(tickets)
        condition.signal()
        condition.unlock()
    }

    /// Sequences decoding and waiting.
    public var load: (active: Int, waiting: Int) {
        condition.lock()
        defer { condition.unlock() }
        return (active.count, waiting.count)
    }

    private func run() {
        while true {
            condition.lock()
            while waiting.isEmpty && active.isEmpty && cancelled.isEmpty { condition.wait() }
            // Cancelled sequences leave; waiting ones join while there is room.
            for (id, entry) in active where cancelled.contains(entry.ticket) {
                decoder.remove(id)
                active[id] = nil
            }
            waiting.removeAll { cancelled.contains($0.ticket) }
            cancelled.removeAll()
            var joined: [(ticket: Int, request: DecodeRequest)] = []
            while active.count + joined.count < maxBatch && !waiting.isEmpty { joined.append(waiting.removeFirst()) }
            condition.unlock()
            for entry in joined {
                do {
                    let id = try decoder.add(prompt: entry.request.prompt, options: entry.request.options, constraint: entry.request.constraint,
                                             adapter: entry.request.adapter)
                    condition.lock()
                    active[id] = entry
                    condition.unlock()
                } catch {
                    entry.request.events(.failed("\(error)"))
                }
            }
            step()
        }
    }

    private func step() {
        condition.lock()
        let current = active
        condition.unlock()
        guard !current.isEmpty else { return }
        let emissions: [BatchDecoder.Emission]
        do { emissions = try decoder.step() } catch {
            for (id, entry) in current {
                entry.request.events(.failed("decoding failed: \(error)"))
                decoder.remove(id)
            }
            condition.lock()
            for id in current.keys { active[id] = nil }
            condition.unlock()
            return
        }
        var ended: [Int] = []
        for emission in emissions {
            guard let entry = current[emission.sequence] else { continue }
            let stopToken = entry.request.options.stopTokens.contains(emission.token)
            if !stopToken { entry.request.events(.token(emission.token, logprob: emission.logprob, top: emission.topLogprobs)) }
            if emission.finished {
                let complete = stopToken || entry.request.constraint?.isComplete == true
                entry.request.events(.finished(complete ? .stop : .length))
                ended.append(emission.sequence)
            }
        }
        // A sequence that ended without a token (its constraint left nothing to pick).
        for (id, entry) in current where !ended.contains(id) && decoder.isFinished(id) && !emissions.contains(where: { $0.sequence == id }) {
            entry.request.events(.failed("no token fits the response format within max_tokens"))
            ended.append(id)
        }
        condition.lock()
        for id in ended {
            decoder.remove(id)
            active[id] = nil
        }
        condition.unlock()
    }
}
