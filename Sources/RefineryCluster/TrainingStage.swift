import Foundation
import RefineryCore
import RefineryModel
import RefineryStore
import RefineryText

/// The training stage at the coordinator (DESIGN §3.9, §4). The coordinator owns the
/// parameters and AdamW state (`trainer`); each optimizer step's micro-batches are tasks
/// ("train:S:M"), answered with summed gradients that are added in micro-batch order whatever
/// order they arrive in; then it scales, clips, steps, evaluates (one task per eval sequence,
/// "eval:S:I") and checkpoints to SQLite. A worker gets the parameters of the current version
/// (= the step number) before its first task of that step.
public final class TrainingStage: ClusterStage {
    public let name = "train"
    /// A micro-batch that takes longer than this is handed to another worker.
    public let leaseTimeout: Double
    public let trainer: Trainer
    /// The step policy, log and checkpoints shared with `refinery train`.
    public let driver: TrainingDriver
    private let store: RunStore

    private enum Phase { case gradients, eval, finished }
    private var phase = Phase.gradients
    private var work: [MicroBatchWork] = []
    private var stepTokens = 0
    /// Next micro-batch to add; results that arrive early wait in `early`.
    private var nextMicro = 0
    private var early: [Int: (loss: Double, gradient: Data)] = [:]
    private var lossSum = 0.0
    private var evalResults: [Int: (Double, Int)] = [:]
    private var queue: [TaskID] = []
    private var open: Set<TaskID> = []
    private var parameters = Data()
    private var version: UInt64 = 0
    private let started = Date().timeIntervalSince1970
    private var stepsHere = 0
    private var tokensHere = 0
    private var lastRecord: StepRecord?
    /// Wall seconds of each optimizer step computed here, and the longest compute of one worker within it
    /// (the step's critical path when workers compute in parallel).
    public private(set) var stepSeconds: [Double] = []
    public private(set) var stepComputeSeconds: [Double] = []
    private var stepStarted = Date().timeIntervalSince1970
    private var stepCompute: [String: Double] = [:]
    /// Called after every optimizer step (progress display).
    public var onStep: (StepRecord, Double?) -> Void = { _, _ in }

    /// Restores the newest checkpoint of `driver`'s store, if any, and truncates the log after it.
    /// `store` counts the tasks each worker answered (for `status`).
    public init(driver: TrainingDriver, store: RunStore, leaseTimeout: Double = 600) throws {
        self.driver = driver
        trainer = driver.trainer
        self.store = store
        self.leaseTimeout = leaseTimeout
        try store.setMeta("train_total_steps", String(trainer.totalSteps))
        let bytes = trainer.engine.gradientCount * MemoryLayout<Float>.size
        guard bytes <= WireLimits.maxMessageBytes else {
            throw ClusterError("the trainable parameters (\(bytes >> 20) MiB) do not fit in one cluster message (\(WireLimits.maxMessageBytes >> 20) MiB): train this model with LoRA, or on one machine with `refinery train`")
        }
        if try driver.begin(resume: true) {
            phase = .finished
        } else {
            beginStep()
        }
    }

    public var isComplete: Bool { phase == .finished }

    public func capacity(of worker: ConnectedWorker) -> Int { worker.modelHash.isEmpty ? 0 : 2 }

    private func beginStep() {
        stepStarted = Date().timeIntervalSince1970
        stepCompute = [:]
        version = UInt64(trainer.step)
        parameters = trainer.engine.parameterBytes()
        work = trainer.work(step: trainer.step)
        stepTokens = work.map(\.tokens).reduce(0, +)
        nextMicro = 0
        early.removeAll()
        lossSum = 0
        trainer.accumulator.reset()
        queue = work.map { TaskID.microBatch(step: trainer.step, index: $0.micro) }.reversed()
        open = Set(queue)
        phase = .gradients
        if stepTokens == 0 { open.removeAll(); queue.removeAll() }
    }

    private func beginEval() {
        version = UInt64(trainer.step)
        parameters = trainer.engine.parameterBytes()
        evalResults.removeAll()
        queue = trainer.evalSequences.indices.map { TaskID.eval(step: trainer.step, index: $0) }.reversed()
        open = Set(queue)
        phase = .eval
    }

    public func takeTask(for worker: ConnectedWorker, now: Double) throws -> TaskID? {
        while let task = queue.popLast() {
            if open.contains(task) { return task }
        }
        return nil
    }

    public func requeue(_ task: TaskID) {
        guard open.contains(task), !queue.contains(task) else { return }
        queue.append(task)
    }

    public func isOpen(_ task: TaskID) -> Bool { open.contains(task) }

    private static func sequenceMessage(_ sequence: TrainingSequence) -> Refinery_Cluster_Sequence {
        var message = Refinery_Cluster_Sequence()
        message.ids = sequence.ids.map { Int32(truncatingIfNeeded: $0) }
        message.trained = Data(sequence.trained.map { $0 ? 1 : 0 })
        message.positions = sequence.positions?.map { Int32(truncatingIfNeeded: $0) } ?? []
        message.keyStart = sequence.keyStart?.map { Int32(truncatingIfNeeded: $0) } ?? []
        return message
    }

    public func messages(for lease: Lease, worker: ConnectedWorker) throws -> [Refinery_Cluster_Envelope.OneOf_Body] {
        var bodies: [Refinery_Cluster_Envelope.OneOf_Body] = []
        if worker.parameterVersion != version {
            var update = Refinery_Cluster_ParameterUpdate()
            update.version = version
            update.values = parameters
            update.count = UInt64(parameters.count / 4)
            bodies.append(.parameterUpdate(update))
            worker.parameterVersion = version
        }
        var task = Refinery_Cluster_GradientTask()
        task.lease = lease.message
        task.parameterVersion = version
        task.step = UInt64(trainer.step)
        switch lease.task {
        case let .eval(_, index):
            guard trainer.evalSequences.indices.contains(index) else { throw ClusterError("no eval sequence \(index)") }
            task.lossOnly = true
            task.sequences = [Self.sequenceMessage(trainer.evalSequences[index])]
        case let .microBatch(_, index):
            guard work.indices.contains(index) else { throw ClusterError("no micro-batch \(index) in step \(trainer.step)") }
            let micro = work[index]
            task.microBatch = UInt32(micro.micro)
            task.sequences = micro.sequences.map(Self.sequenceMessage)
            task.dropoutSeeds = micro.dropoutSeeds
        case .chunk, .call:
            throw ClusterError("\(lease.task) is not a training task")
        }
        bodies.append(.gradientTask(task))
        return bodies
    }

    /// Adds a gradient from the current holder of the current lease, computed with the current
    /// parameters and of the engine's size; anything else is dropped and changes nothing.
    public func accept(_ stageResult: StageResult, lease: Lease, isCurrent: Bool, from worker: ConnectedWorker) throws -> ResultVerdict {
        guard case let .gradient(result) = stageResult else { return .dropped("not a gradient result") }
        let task = lease.task
        guard open.contains(task) else { return .dropped("\(task) is answered already or belongs to another step") }
        guard isCurrent else { return .dropped("\(lease) is not the task's current lease, or \(worker.id) no longer holds it") }
        guard result.parameterVersion == version else { return .dropped("\(task) was computed with parameters \(result.parameterVersion), not \(version)") }
        guard result.error.isEmpty else {
            worker.parameterVersion = nil  // send the parameters again with its next task
            return .dropped("worker \(worker.id) could not compute \(task): \(result.error.prefix(500))")
        }
        switch task {
        case let .eval(_, index):
            guard trainer.evalSequences.indices.contains(index) else { return .dropped("no eval sequence \(index)") }
            open.remove(task)
            try store.commitTaskResult(taskID: task.key, workerID: worker.id)
            evalResults[index] = (result.lossSum, Int(result.tokens))
        case let .microBatch(_, index):
            guard work.indices.contains(index) else { return .dropped("no micro-batch \(index) in step \(trainer.step)") }
            guard result.gradient.count == trainer.accumulator.count * 4 else {
                return .dropped("\(task): a gradient of \(result.gradient.count / 4) floats, expected \(trainer.accumulator.count)")
            }
            open.remove(task)
            try store.commitTaskResult(taskID: task.key, workerID: worker.id)
            early[index] = (result.lossSum, result.gradient)
            while let next = early.removeValue(forKey: nextMicro) {
                next.gradient.withUnsafeBytes { raw in
                    if let base = raw.baseAddress?.assumingMemoryBound(to: Float.self) { trainer.accumulator.add(base) }
                }
                lossSum += next.loss
                nextMicro += 1
            }
        case .chunk, .call:
            return .dropped("\(task) is not a training task")
        }
        stepCompute[worker.id, default: 0] += result.computeSeconds
        return .stored
    }

    public func tick(now: Double) throws {
        guard open.isEmpty else { return }
        switch phase {
        case .finished:
            return
        case .gradients:
            let record: StepRecord
            do { record = try driver.finishStep(lossSum: lossSum, tokens: stepTokens) } catch let error as ModelError {
                throw ClusterError(error.message)
            }
            lastRecord = record
            stepsHere += 1
            tokensHere += record.tokens
            if driver.evaluationDue {
                beginEval()
            } else {
                onStep(record, nil)
                try endStep()
            }
        case .eval:
            var sum = 0.0, count = 0
            for index in trainer.evalSequences.indices {
                guard let (s, n) = evalResults[index] else { return }
                sum += s
                count += n
            }
            let loss = count > 0 ? sum / Double(count) : .nan
            try driver.recordEval(loss: loss)
            if let lastRecord { onStep(lastRecord, loss) }
            try endStep()
        }
    }

    private func endStep() throws {
        stepSeconds.append(Date().timeIntervalSince1970 - stepStarted)
        stepComputeSeconds.append(stepCompute.values.max() ?? 0)
        if try driver.endStep() {
            phase = .finished
        } else {
            beginStep()
        }
    }

    /// Per-step timings as one JSON object (for `bench/cluster.sh`).
    public var timingJSON: String {
        func list(_ values: [Double]) -> String { "[" + values.map { String(format: "%.4f", $0) }.joined(separator: ",") + "]" }
        return "{\"step_seconds\":\(list(stepSeconds)),\"critical_compute_seconds\":\(list(stepComputeSeconds))}"
    }

    public var progress: (done: Int, total: Int) { (trainer.step, trainer.totalSteps) }

    public var progressLine: String {
        let elapsed = max(Date().timeIntervalSince1970 - started, 1e-9)
        var line = "step \(trainer.step)/\(trainer.totalSteps)"
        if let lastRecord { line += String(format: ", loss %.4f, grad_norm %.3f, lr %.2e", lastRecord.loss, lastRecord.gradNorm, lastRecord.learningRate) }
        line += String(format: ", %.0f tokens/s", Double(tokensHere) / elapsed)
        return line
    }
}
