import Foundation
import RefineryCore
import RefineryTensor
import RefineryText

/// One optimizer step's record (a `train_log.jsonl` row).
public struct StepRecord: Sendable, Equatable {
    public var step: Int
    public var loss: Double
    public var gradNorm: Double
    public var learningRate: Double
    public var tokens: Int

    /// The `train_log.jsonl` line (without the newline).
    public var logLine: String { json.compactText }

    /// The `train_log.jsonl` line of an eval.
    public static func evalLogLine(step: Int, loss: Double) -> String {
        JSONValue.object([("step", .int(step)), ("eval_loss", .double(loss))]).compactText
    }

    /// The step of a `train_log.jsonl` row, nil for a row that is not one.
    public static func step(ofLogRow row: String) -> Int? { (try? JSONValue.parse(row))?["step"]?.intValue }

    var json: JSONValue {
        .object([("step", .int(step)), ("loss", .double(loss)), ("grad_norm", .double(gradNorm)),
                 ("lr", .double(learningRate)), ("tokens", .int(tokens))])
    }
}

/// Progress of a run, for the progress line.
public struct TrainingProgress: Sendable {
    public var record: StepRecord
    public var totalSteps: Int
    public var tokensPerSecond: Double
    public var secondsRemaining: Double
    public var evalLoss: Double?
}

/// Runs fine-tuning on one machine: data schedule, gradient accumulation with token-weighted
/// loss, clipping, AdamW, schedules, eval, checkpoints and exact resume.
public final class Trainer: @unchecked Sendable {
    public let model: LlamaModel
    public let modelDirectory: URL
    public let options: TrainingOptions
    public let engine: GradientEngine
    public let schedule: DataSchedule
    public let optimizer: AdamW
    public let evalSequences: [TrainingSequence]
    public let totalSteps: Int
    /// Steps completed.
    public private(set) var step = 0

    /// Prepares a run. `adapter` is the starting LoRA adapter (fresh or `--init-adapter`).
    public init(model: LlamaModel, modelDirectory: URL, options: TrainingOptions, adapter: LoRAAdapter?,
                train: [EncodedSample], eval: [EncodedSample]) throws {
        try options.validate()
        guard !train.isEmpty else { throw ModelError("the training dataset holds no samples") }
        self.model = model
        self.modelDirectory = modelDirectory
        self.options = options
        engine = try GradientEngine(model: model, adapter: options.method.trainsAdapter ? adapter : nil,
                                    trainsBase: options.method == .full, checkpointing: options.gradientCheckpointing)
        schedule = DataSchedule(samples: train, microBatchSize: options.microBatchSize, accumulation: options.gradientAccumulation,
                                shuffle: options.shuffle, seed: options.seed, packingLength: options.packing ? options.maxLength : nil)
        optimizer = AdamW(weightDecay: options.weightDecay, eightBit: options.optimizer == .adamW8bit)
        evalSequences = eval.map { TrainingSequence(ids: $0.ids, trained: $0.trained) }
        totalSteps = options.steps ?? max(1, Int((Double(schedule.stepsPerEpoch) * options.epochs).rounded(.up)))
    }

    /// Learning rate of optimizer step `step` (0-based).
    public func learningRate(at step: Int) -> Double {
        options.schedule.rate(base: options.learningRate, step: step, warmup: options.warmupSteps, total: totalSteps)
    }

    /// The micro-batches of optimizer step `step` (0-based) with their dropout seeds.
    public func work(step: Int) -> [MicroBatchWork] {
        schedule.microBatches(step: step).enumerated().map { micro, batch in
            let seeds = batch.indices.map { slot in
                options.seed &* 1_000_003 &+ UInt64(step) &* 65_537 &+ UInt64(micro) &* 257 &+ UInt64(slot)
            }
            return MicroBatchWork(step: step, micro: micro, sequences: batch, dropoutSeeds: seeds)
        }
    }

    /// Sums micro-batch gradients in order (a cluster's coordinator adds its workers' results here).
    public private(set) lazy var accumulator = GradientAccumulator(parameters: engine.parameters)

    /// Computes the next optimizer step's micro-batch gradients on this machine and adds them
    /// into `accumulator` in micro-batch order; returns the summed loss and trained tokens for
    /// `finishStep`.
    public func accumulateStep() throws -> (lossSum: Double, tokens: Int) {
        let batches = work(step: step)
        let tokens = batches.map(\.tokens).reduce(0, +)
        accumulator.reset()
        var lossSum = 0.0
        if tokens > 0 {
            for batch in batches {
                lossSum += try engine.microBatchGradient(batch).lossSum
                accumulator.addGradients(of: engine.parameters)
            }
        }
        return (lossSum, tokens)
    }

    /// Runs the next optimizer step on this machine.
    public func runStep() throws -> StepRecord {
        let (lossSum, tokens) = try accumulateStep()
        return try finishStep(lossSum: lossSum, tokens: tokens)
    }

    /// Completes the step whose micro-batch gradients are in `accumulator`: scales by
    /// 1 / tokens, clips, refuses a non-finite loss or norm, and applies AdamW.
    public func finishStep(lossSum: Double, tokens: Int) throws -> StepRecord {
        accumulator.store(into: engine.parameters, scale: tokens > 0 ? 1 / Float(tokens) : 0)
        let loss = tokens > 0 ? lossSum / Double(tokens) : 0
        let norm = GradientClipping.clip(engine.parameters, maxNorm: options.maxGradNorm.map(Float.init))
        guard loss.isFinite, norm.isFinite else {
            throw ModelError("step \(step + 1): the loss or gradient norm is not finite (loss \(loss), grad_norm \(norm)); stopped before updating the weights")
        }
        let lr = learningRate(at: step)
        optimizer.step(engine.parameters, learningRate: lr)
        engine.parametersChanged()
        step += 1
        return StepRecord(step: step, loss: loss, gradNorm: norm, learningRate: lr, tokens: tokens)
    }

    /// Token-weighted loss over the eval set with the current weights.
    public func evaluate() throws -> Double {
        var sum = 0.0, count = 0
        for sequence in evalSequences {
            let (s, n) = try engine.loss(sequence)
            sum += s
            count += n
        }
        return count > 0 ? sum / Double(count) : .nan
    }

    // MARK: Checkpoints

    /// Writes parameters, optimizer moments and the step to `directory/checkpoints/step-N`
    /// (staged, then renamed: a checkpoint is complete or absent).
    public func saveCheckpoint(in directory: URL) throws -> URL {
        let fm = FileManager.default
        let root = directory.appendingPathComponent("checkpoints")
        let final = root.appendingPathComponent(String(format: "step-%06d", step))
        let staging = root.appendingPathComponent(".staging-\(step)")
        try? fm.removeItem(at: staging)
        do {
            try fm.createDirectory(at: staging, withIntermediateDirectories: true)
            try SafetensorsWriter.write(engine.parameters.map { ($0.name, $0.value) }, to: staging.appendingPathComponent("parameters.safetensors").path)
            let moments = optimizer.stateEntries().map { entry in
                SafetensorsWriter.LazyEntry(name: entry.name, dtype: entry.dtype, shape: entry.shape) { Data(entry.bytes) }
            }
            try SafetensorsWriter.write(lazy: moments, to: staging.appendingPathComponent("optimizer.safetensors").path)
            try Data(CheckpointState.json(of: self).prettyText().utf8).write(to: staging.appendingPathComponent("state.json"))
            try? fm.removeItem(at: final)
            try fm.moveItem(at: staging, to: final)
        } catch let error as ModelError {
            throw error
        } catch {
            throw ModelError("cannot write checkpoint \(final.path): \(error.localizedDescription)")
        }
        return final
    }

    /// The newest complete checkpoint under `directory`, if any.
    public static func latestCheckpoint(in directory: URL) -> URL? {
        let root = directory.appendingPathComponent("checkpoints")
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: root.path)) ?? []).filter { $0.hasPrefix("step-") }.sorted()
        for name in names.reversed() where FileManager.default.fileExists(atPath: root.appendingPathComponent(name).appendingPathComponent("state.json").path) {
            return root.appendingPathComponent(name)
        }
        return nil
    }

    /// Restores parameters, moments and the step from a checkpoint folder.
    public func restore(from checkpoint: URL) throws {
        let stateJSON: JSONValue
        do { stateJSON = try JSONValue.parse(bytes: Array(try Data(contentsOf: checkpoint.appendingPathComponent("state.json")))) } catch {
            throw ModelError("checkpoint \(checkpoint.path) has no readable state.json: \(error)")
        }
        guard let savedStep = stateJSON["step"]?.intValue, let optimizerSteps = stateJSON["optimizer_steps"]?.intValue else {
            throw ModelError("checkpoint \(checkpoint.path)/state.json lacks step")
        }
        let parameters = try SafetensorsFile(path: checkpoint.appendingPathComponent("parameters.safetensors").path)
        var values: [String: Tensor] = [:]
        for parameter in engine.parameters {
            guard let entry = parameters.entries[parameter.name], entry.shape == parameter.value.shape else {
                throw ModelError("checkpoint \(checkpoint.path) does not match this run: \(parameter.name) is missing or has another shape")
            }
            values[parameter.name] = try parameters.tensor(parameter.name)
        }
        let moments = try SafetensorsFile(path: checkpoint.appendingPathComponent("optimizer.safetensors").path)
        var state: [String: [UInt8]] = [:]
        for name in moments.names { state[name] = try moments.rawBytes(name) }
        try apply(step: savedStep, optimizerSteps: optimizerSteps, parameters: values, optimizerState: state)
    }

    /// Puts saved parameters (already checked against the engine's shapes), the optimizer's state
    /// (checked by `AdamW.restore` before anything changes) and the step in place.
    private func apply(step savedStep: Int, optimizerSteps: Int, parameters: [String: Tensor], optimizerState: [String: [UInt8]]) throws {
        try optimizer.restore(step: optimizerSteps, bytes: optimizerState, parameters: engine.parameters)
        for parameter in engine.parameters {
            guard let saved = parameters[parameter.name] else { continue }
            parameter.value.pointer.update(from: saved.pointer, count: saved.count)
        }
        engine.parametersChanged()
        step = savedStep
    }

    // MARK: State as named tensors (the cluster keeps it in SQLite)

    /// Parameters ("p/NAME", float32 bytes) and the optimizer's state entries (`AdamW.stateEntries()`).
    public func stateTensors() -> [(String, [UInt8])] {
        var result: [(String, [UInt8])] = engine.parameters.map {
            ("p/" + $0.name, Array(UnsafeRawBufferPointer(start: $0.value.pointer, count: $0.value.count * MemoryLayout<Float>.size)))
        }
        for entry in optimizer.stateEntries() { result.append((entry.name, entry.bytes)) }
        return result
    }

    /// Restores what `stateTensors()` saved, with the step and AdamW's step count.
    public func restoreState(step savedStep: Int, optimizerSteps: Int, tensors: [String: [UInt8]]) throws {
        func tensor(_ bytes: [UInt8], shape: [Int], name: String) throws -> Tensor {
            let result = Tensor(zeros: shape)
            guard bytes.count == result.count * MemoryLayout<Float>.size else {
                throw ModelError("the saved training state does not match this run: \(name) has \(bytes.count / 4) values, expected \(result.count)")
            }
            bytes.withUnsafeBytes { raw in
                if let base = raw.baseAddress { memcpy(result.pointer, base, bytes.count) }
            }
            return result
        }
        var values: [String: Tensor] = [:]
        for parameter in engine.parameters {
            guard let saved = tensors["p/" + parameter.name] else { throw ModelError("the saved training state lacks \(parameter.name)") }
            values[parameter.name] = try tensor(saved, shape: parameter.value.shape, name: parameter.name)
        }
        try apply(step: savedStep, optimizerSteps: optimizerSteps, parameters: values,
                  optimizerState: tensors.filter { !$0.key.hasPrefix("p/") })
    }

    /// Writes the trained adapter (LoRA) or model folder (full) into `output`.
    public func writeResult(to output: URL) throws {
        switch options.method {
        case .lora, .qlora:
            guard let adapter = engine.adapter else { throw ModelError("no adapter to write") }
            try adapter.save(directory: output, baseModel: modelDirectory.path)
            if options.method.quantizesBase { try QLoRABaseNote.write(into: output) }
        case .full:
            let dtype = (try? Checkpoint(directory: modelDirectory).storedDType) ?? .f32
            try model.writeFolder(to: output, copyingFrom: modelDirectory, dtype: dtype)
        }
    }
}
