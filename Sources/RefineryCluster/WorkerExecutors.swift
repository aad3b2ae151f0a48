import Foundation
import RefineryLLM
import RefineryModel

/// Carries out generation tasks on a worker: at most `slots` LLM calls in flight; the result
/// message goes to `deliver` when the chunk ends.
public protocol GenerationTaskRunner: AnyObject, Sendable {
    func start(lease: Lease, chunkID: Int64, text: String, deliver: @escaping @Sendable (Refinery_Cluster_Envelope.OneOf_Body) -> Void)
}

/// Carries out gradient tasks on a worker, one at a time, with the parameters of the version a
/// task names; results go to the sink given when it was built.
public protocol GradientTaskRunner: AnyObject {
    /// Content hash of the base model it holds.
    var modelHash: String { get }
    /// Builds the engine for these settings (again only if they change).
    func configure(_ settings: TrainingWireSettings) throws
    /// Loads the trainable parameters of `version`.
    func enqueue(version: UInt64, values: Data)
    /// Computes the task (after any parameters enqueued before it).
    func enqueue(lease: Lease, task: GradientTaskSpec)
}

/// How a worker builds its executors: the real ones by default; tests may pass others.
public struct WorkerExecutors: Sendable {
    /// Settings, API key (nil: none), slots → a generation runner.
    public var generation: @Sendable (GenerationWireSettings, String?, Int) -> any GenerationTaskRunner
    /// Model folder, result sink → a gradient runner.
    public var gradients: @Sendable (String, @escaping @Sendable (Refinery_Cluster_Envelope.OneOf_Body) -> Void) throws -> any GradientTaskRunner
    /// Slots, the key for a call → a runner of curation calls.
    public var calls: @Sendable (Int, @escaping @Sendable (LLMCall) -> String?) -> any CallTaskRunner

    public init(generation: @escaping @Sendable (GenerationWireSettings, String?, Int) -> any GenerationTaskRunner,
                gradients: @escaping @Sendable (String, @escaping @Sendable (Refinery_Cluster_Envelope.OneOf_Body) -> Void) throws -> any GradientTaskRunner,
                calls: @escaping @Sendable (Int, @escaping @Sendable (LLMCall) -> String?) -> any CallTaskRunner = { CallExecutor(slots: $0, key: $1) }) {
        self.generation = generation
        self.gradients = gradients
        self.calls = calls
    }

    /// LLM calls through `ChunkProcessor` and `LLMCallMaker`, gradients through `GradientEngine`.
    public static let standard = standard(nf4Cache: nil)

    /// The standard executors, a QLoRA base kept in `nf4Cache` between runs.
    public static func standard(nf4Cache: NF4Cache?) -> WorkerExecutors {
        WorkerExecutors(
            generation: { settings, key, slots in GenerationExecutor(settings: settings, apiKey: key, slots: slots) },
            gradients: { directory, deliver in try GradientExecutor(modelDirectory: directory, nf4Cache: nf4Cache, deliver: deliver) })
    }
}
