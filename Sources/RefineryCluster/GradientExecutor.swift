import Foundation
import RefineryModel
import RefineryTensor

/// Computes gradient tasks on a worker, one at a time on its own thread: the summed gradient of
/// a micro-batch with the parameters of the version the task names, or an eval loss. The engine
/// is the one `refinery train` uses, so the numbers are the same bits.
final class GradientExecutor: @unchecked Sendable {
    let modelDirectory: String
    let modelHash: String
    private let outbox: Outbox
    private let queue = DispatchQueue(label: "refinery-gradients")
    private var model: LlamaModel?
    private var engine: GradientEngine?
    private var settings: TrainingWireSettings?
    private var version: UInt64?
    private let lock = NSLock()

    init(modelDirectory: String, outbox: Outbox) throws {
        self.modelDirectory = modelDirectory
        self.outbox = outbox
        modelHash = try ModelHash.of(directory: modelDirectory)
    }

    /// Builds the engine for these settings (once; again only if they change).
    func configure(json: String) throws {
        let settings = try TrainingWireSettings(json: json)
        lock.lock()
        defer { lock.unlock() }
        BLAS.setThreads(settings.blasThreads)
        guard settings != self.settings else { return }
        let model = try self.model ?? LlamaModel(directory: URL(fileURLWithPath: modelDirectory))
        let adapter = settings.method == .lora ? try LoRAAdapter.initialize(model: model.config, config: settings.lora, seed: 0) : nil
        engine = try GradientEngine(model: model, adapter: adapter, trainsBase: settings.method == .full,
                                    checkpointing: settings.gradientCheckpointing)
        self.model = model
        self.settings = settings
        version = nil
    }

    func enqueue(update: Refinery_Cluster_ParameterUpdate) {
        queue.async { [self] in
            lock.lock()
            defer { lock.unlock() }
            guard let engine else { return }
            do {
                try engine.loadParameterBytes(update.values)
                version = update.version
            } catch {
                version = nil
            }
        }
    }

    func enqueue(task: Refinery_Cluster_GradientTask) {
        queue.async { [self] in
            outbox.post(.gradientResult(compute(task)))
        }
    }

    private func compute(_ task: Refinery_Cluster_GradientTask) -> Refinery_Cluster_GradientResult {
        lock.lock()
        defer { lock.unlock() }
        var result = Refinery_Cluster_GradientResult()
        result.lease = task.lease
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
        let sequences = task.sequences.map { s in
            TrainingSequence(ids: s.ids.map(Int.init), trained: s.trained.map { $0 != 0 },
                             positions: s.positions.isEmpty ? nil : s.positions.map(Int.init),
                             keyStart: s.keyStart.isEmpty ? nil : s.keyStart.map(Int.init))
        }
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
                let work = MicroBatchWork(step: Int(task.step), micro: Int(task.microBatch), sequences: sequences, dropoutSeeds: task.dropoutSeeds)
                let (lossSum, tokens) = try engine.microBatchGradient(work)
                result.lossSum = lossSum
                result.tokens = UInt64(tokens)
                result.gradient = engine.gradientBytes()
            }
        } catch {
            result.error = "\(error)"
        }
        result.computeSeconds = Date().timeIntervalSince(start)
        return result
    }
}
