import Foundation

/// What a leased task is. On the wire it is a `TaskId` message; in the state file its `key`.
public enum TaskID: Hashable, Sendable, Comparable, CustomStringConvertible {
    /// Back-translate this chunk.
    case chunk(Int64)
    /// Gradient of micro-batch `index` of optimizer step `step` (0-based).
    case microBatch(step: Int, index: Int)
    /// Loss of eval sequence `index` after step `step`.
    case eval(step: Int, index: Int)
    /// One LLM call of a curation stage (its id in the state's call table).
    case call(Int64)

    /// Largest step and index a task may name (far beyond any real run, far below overflow).
    public static let maxStep = 1 << 40
    public static let maxIndex = 1 << 24

    /// The key the state file stores leases under: `chunk:7`, `train:3:1`, `eval:3:0`, `call:12`.
    public var key: String {
        switch self {
        case let .chunk(id): return "chunk:\(id)"
        case let .microBatch(step, index): return "train:\(step):\(index)"
        case let .eval(step, index): return "eval:\(step):\(index)"
        case let .call(id): return "call:\(id)"
        }
    }

    public var description: String { key }

    /// Parses a stored key; nil for anything else.
    public init?(key: String) {
        let parts = key.split(separator: ":", omittingEmptySubsequences: false)
        switch (parts.first, parts.count) {
        case ("chunk", 2):
            guard let id = Int64(parts[1]), id >= 0 else { return nil }
            self = .chunk(id)
        case ("call", 2):
            guard let id = Int64(parts[1]), id >= 0 else { return nil }
            self = .call(id)
        case ("train", 3), ("eval", 3):
            guard let step = Int(parts[1]), let index = Int(parts[2]), (0...Self.maxStep).contains(step), (0...Self.maxIndex).contains(index) else { return nil }
            self = parts[0] == "train" ? .microBatch(step: step, index: index) : .eval(step: step, index: index)
        default:
            return nil
        }
    }

    /// The step of a training or eval task.
    public var step: Int? {
        switch self {
        case .chunk, .call: return nil
        case let .microBatch(step, _), let .eval(step, _): return step
        }
    }

    /// Chunks by id, then micro-batches and eval sequences by (step, index), then calls by id:
    /// numeric order, so chunk 2 comes before chunk 10.
    public static func < (lhs: TaskID, rhs: TaskID) -> Bool { lhs.order < rhs.order }

    private var order: (Int, Int64, Int) {
        switch self {
        case let .chunk(id): return (0, id, 0)
        case let .microBatch(step, index): return (1, Int64(step), index)
        case let .eval(step, index): return (2, Int64(step), index)
        case let .call(id): return (3, id, 0)
        }
    }

    /// The wire form.
    public var message: Refinery_Cluster_TaskId {
        var message = Refinery_Cluster_TaskId()
        switch self {
        case let .chunk(id): message.chunk = id
        case let .microBatch(step, index):
            var micro = Refinery_Cluster_TaskId.MicroBatch()
            micro.step = UInt64(step)
            micro.index = UInt32(index)
            message.microBatch = micro
        case let .eval(step, index):
            var eval = Refinery_Cluster_TaskId.EvalSequence()
            eval.step = UInt64(step)
            eval.index = UInt32(index)
            message.eval = eval
        case let .call(id): message.call = id
        }
        return message
    }

    /// Reads the wire form, refusing empty ids and numbers out of range.
    public init(message: Refinery_Cluster_TaskId) throws(WireRefusal) {
        switch message.kind {
        case nil:
            throw WireRefusal("a task id without a kind")
        case let .chunk(id)?:
            guard id >= 0 else { throw WireRefusal("chunk id \(id) is negative") }
            self = .chunk(id)
        case let .microBatch(micro)?:
            guard micro.step <= UInt64(Self.maxStep), micro.index <= UInt32(Self.maxIndex) else {
                throw WireRefusal("micro-batch \(micro.index) of step \(micro.step) is out of range")
            }
            self = .microBatch(step: Int(micro.step), index: Int(micro.index))
        case let .eval(eval)?:
            guard eval.step <= UInt64(Self.maxStep), eval.index <= UInt32(Self.maxIndex) else {
                throw WireRefusal("eval sequence \(eval.index) of step \(eval.step) is out of range")
            }
            self = .eval(step: Int(eval.step), index: Int(eval.index))
        case let .call(id)?:
            guard id >= 0 else { throw WireRefusal("call id \(id) is negative") }
            self = .call(id)
        }
    }
}

/// A task assignment: the task and its lease epoch (epochs start at 1 and only grow).
public struct Lease: Hashable, Sendable, CustomStringConvertible {
    public var task: TaskID
    public var epoch: Int64

    public init(task: TaskID, epoch: Int64) {
        self.task = task
        self.epoch = epoch
    }

    public var description: String { "\(task.key)@\(epoch)" }

    /// The wire form.
    public var message: Refinery_Cluster_Lease {
        var lease = Refinery_Cluster_Lease()
        lease.task = task.message
        lease.epoch = UInt64(epoch)
        return lease
    }

    /// Reads the wire form: a task id and an epoch in 1...Int64.max.
    public init(message: Refinery_Cluster_Lease) throws(WireRefusal) {
        guard message.hasTask else { throw WireRefusal("a lease without a task") }
        guard message.epoch >= 1, message.epoch <= UInt64(Int64.max) else { throw WireRefusal("lease epoch \(message.epoch) is out of range") }
        task = try TaskID(message: message.task)
        epoch = Int64(message.epoch)
    }
}

/// Why a message from the wire was not accepted; logged, never trusted, never fatal.
public struct WireRefusal: Error, CustomStringConvertible, Sendable, Equatable {
    public let reason: String
    public init(_ reason: String) { self.reason = reason }
    public var description: String { reason }
}
