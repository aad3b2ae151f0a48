import Foundation
import RefineryLLM

/// A worker's hello, checked.
public struct WorkerHello: Sendable, Equatable {
    public var protocolVersion: UInt32
    public var workerID: String
    public var host: String
    public var slots: Int
    public var modelHash: String
    /// Leases it still works on.
    public var held: [Lease]
    /// Leases whose results wait in its spool.
    public var answered: [Lease]
    public var fetchModel: Bool
}

/// A message from a worker to the coordinator, checked field by field (`Wire.fromWorker`).
public enum WorkerMessage: Sendable {
    case hello(WorkerHello)
    case heartbeat
    case taskRequest
    case generateResult(Lease, Refinery_Cluster_GenerateResult)
    case gradientResult(Lease, Refinery_Cluster_GradientResult)
    case callResult(Lease, Refinery_Cluster_CallResult)
    case modelFileRequest(name: String, offset: UInt64)
}

/// What a gradient task asks for, checked: the micro-batch (or eval sequence) and the
/// parameter version it must be computed with.
public struct GradientTaskSpec: Sendable {
    public var parameterVersion: UInt64
    public var step: Int
    public var microBatch: Int
    public var lossOnly: Bool
    public var sequences: [TrainingSequenceSpec]
    public var dropoutSeeds: [UInt64]
}

/// One training sequence as the wire gives it, structurally checked (the executor checks it
/// against its model).
public struct TrainingSequenceSpec: Sendable {
    public var ids: [Int]
    public var trained: [Bool]
    public var positions: [Int]?
    public var keyStart: [Int]?
}

/// An LLM call a worker is asked to make, checked: the call and how to retry it.
public struct CallTaskSpec: Sendable {
    public var callID: Int64
    public var call: LLMCall
    public var retry: RetryPolicy
    public var timeout: Double
}

/// A message from the coordinator to a worker, checked field by field (`Wire.fromCoordinator`).
public enum CoordinatorMessage: Sendable {
    case welcome(Refinery_Cluster_Welcome, generation: GenerationWireSettings?, training: TrainingWireSettings?)
    case refused(String)
    case heartbeat(helloRequired: Bool)
    case generateTask(Lease, chunkID: Int64, text: String)
    case resultAck(Lease)
    case parameterUpdate(version: UInt64, values: Data)
    case gradientTask(Lease, GradientTaskSpec)
    case callTask(Lease, CallTaskSpec)
    case modelFileChunk(Refinery_Cluster_ModelFileChunk)
    case stop(reason: String, failed: Bool)
}
