import Foundation
import RefineryModel
import RefineryTensor

/// Computes gradient tasks on a worker, one at a time on its own thread: the summed gradient of
/// a micro-batch with the parameters of the version the task names, or an eval loss. The engine
/// is the one `refinery train` uses, so the numbers are the same bits.
final class GradientExecutor: GradientTaskRunner, @unchecked Sendable {
    let modelDirectory: String
    let modelHash: String
    let nf4Cache: NF4Cache?
    private let deliver: @Sendable (Refinery_Cluster_Envelope.OneOf_Body) -> Void
    private let queue = DispatchQueue(label: "refinery-gradients")
    private var model: LlamaModel?
    private var engine: GradientEngine?
    private var settings: TrainingWireSettings?
    private var version: UInt64?
    private let lock = NSLock()

    init(modelDirectory: String, nf4Cache: NF4Cache? = nil, deliver: @escaping @Sendable (Refinery_Cluster_Envelope.OneOf_Body) -> Void) throws {
        self.modelDirectory = modelDirectory
        self.nf4Cache = nf4Cache
        self.deliver = deliver
        modelHash = try ModelHash.of(directory: modelDirectory)
    }

    /// Builds the engine for these settings (once; again only if they change).
    func configure(_ settings: TrainingWireSettings) throws {
        lock.lock()
        defer { lock.unlock() }
        BLAS.setThreads(settings.blasThreads)
        guard settings != self.settings else { return }
        // The base model is loaded again only when the precision or the need for master weights changes.
        let keepFloat = settings.method == .full
        let quantized = settings.method.quantizesBase
        let model = try self.model.flatMap {
            $0.dtype == settings.dtype && (!keepFloat || $0.keepsFloatWeights) && $0.hasQuantizedProjections == quantized ? $0 : nil
        } ?? LlamaModel(directory: URL(fileURLWithPath: modelDirectory), dtype: .fixed(settings.dtype), keepFloatWeights: keepFloat,
                        projections: quantized ? .nf4 : .asStored, nf4Cache: quantized ? nf4Cache : nil)
        let adapter = settings.method.trainsAdapter ? try LoRAAdapter.initialize(model: model.config, config: settings.lora, seed: 0) : nil
        engine = try GradientEngine(model: model, adapter: adapter, trainsBase: settings.method == .full,
                                    checkpointing: settings.gradientCheckpointing)
        self.model = model
        self.settings = settings
        version = nil
    }

    func enqueue(version newVersion: UInt64, values: Data) {
        queue.async { [self] in
            lock.lock()
            defer { lock.unlock() }
            guard let engine else { return }
            do {
                try engine.loadParameterBytes(values)
                version = newVersion
            } catch {
                version = nil
            }
        }
    }

    func enqueue(lease: Lease, task: GradientTaskSpec) {
        queue.async { [self] in
            deliver(.gradientResult(compute(lease: lease, task: task)))
        }
    }

    /// Computes a task; a task the model cannot take (ids outside its vocabulary, geometry the
    /// kernels cannot follow) comes back as an error, never as a gradient. (A non-finite loss
    /// from a well-formed task goes back as it is: the coordinator stops the run on it.)
    private func compute(lease: Lease, task: GradientTaskSpec) -> Refinery_Cluster_GradientResult {
        lock.lock()
        defer { lock.unlock() }
        var result = Refinery_Cluster_GradientResult()
        result.lease = lease.message
        result.parameterVersion = task.parameterVersion
        guard let engine else {
            result.error = "no training settings yet"
            return result
        }
        guard version == task.parameterVersion else {
            result.error = "parameters of version \(task.parameterVersion) have not arrived (holding \(version.map(String.init) ?? "none"))"
            return result
        }
        let start = Date()
        let sequences = task.sequences.map { TrainingSequence(ids: $0.ids, trained: $0.trained, positions: $0.positions, keyStart: $0.keyStart) }
        do {
            if task.lossOnly {
                var sum = 0.0, count = 0
                for sequence in sequences {
                    let (s, n) = try engine.loss(sequence)
                    sum += s
                    count += n
                }
                result.lossSum = sum
                result.tokens = UInt64(count)
            } else {
                let work = MicroBatchWork(step: task.step, micro: task.microBatch, sequences: sequences, dropoutSeeds: task.dropoutSeeds)
                let (lossSum, tokens) = try engine.microBatchGradient(work)
                result.lossSum = lossSum
                result.tokens = UInt64(tokens)
                result.gradient = engine.gradientBytes()
            }
        } catch {
            result = Refinery_Cluster_GradientResult()
            result.lease = lease.message
            result.parameterVersion = task.parameterVersion
            result.error = "\(error)"
        }
        result.computeSeconds = Date().timeIntervalSince(start)
        return result
    }
}
