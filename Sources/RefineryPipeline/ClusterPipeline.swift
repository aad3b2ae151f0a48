import Foundation
import RefineryCore
import RefineryCluster
import RefineryCuration
import RefineryData
import RefineryModel
import RefineryStore
import RefineryTensor

/// One run of the whole pipeline at the coordinator, from a run config: ingest → generate
/// (workers) → dataset and split → curate → train (workers) → outputs. Every stage resumes from
/// the state file, so starting the coordinator again after a kill continues where it was.
public struct ClusterPipeline {
    public let config: RunConfig
    public let listen: String
    public let security: CurveServerSecurity?
    public var heartbeat = 1.0
    /// Where progress text goes.
    public var report: ProgressReport
    /// Where the run's events go (workers joining and lost, leases expiring, failed requests,
    /// checkpoints, stages finished); without one, their text lines go to `report`.
    public var onEvent: ((RunEvent) -> Void)?
    /// The generation job (nil: the config makes no dataset).
    public let generation: GenerationJob?
    /// The state file.
    public let state: String
    /// Send the chunks an earlier run gave up on again (refused once training has begun).
    public var retryFailed = false

    /// Resolves what the run will do before anything starts; `statePath` overrides `data.state`.
    public init(config: RunConfig, statePath: String?, listen: String, security: CurveServerSecurity?, report: @escaping ProgressReport) throws {
        var config = config
        if let statePath { config.data.state = statePath }
        let path = config.path ?? "the config"
        generation = config.data.articles != nil ? try GenerationJob(config: config) : nil
        guard generation != nil || config.train.isRequested else {
            throw PipelineError("\(path) asks for nothing: give data.articles (and a generate section) to make a dataset, and/or a train section to fine-tune")
        }
        guard let state = config.data.state else { throw PipelineError("--state is required (or data.state in \(path))") }
        if config.export.merged != nil && !config.train.isRequested {
            throw PipelineError("\(path): export.merged needs a train section (there is no adapter to merge)")
        }
        if config.train.isRequested {
            // The rules workers check training settings by when they arrive.
            do { _ = try TrainingWireSettings(message: Self.trainingSettings(config.train.options).message) } catch {
                throw PipelineError("\(path): \(error.reason)")
            }
        }
        self.config = config
        self.state = state
        self.listen = listen
        self.security = security
        self.report = report
    }

    /// What workers need to build the coordinator's gradient engine; products cut for this
    /// process's thread count, so every worker computes the same bits.
    static func trainingSettings(_ options: TrainingOptions, dtype: ComputeDType = .float32) -> TrainingWireSettings {
        TrainingWireSettings(method: options.method, lora: options.lora, gradientCheckpointing: options.gradientCheckpointing,
                             blasThreads: BLAS.threadCount, dtype: dtype, maxLength: options.maxLength)
    }

    /// The base model workers need (nil when the run does not train).
    public var trainModel: String? { config.train.isRequested ? config.train.model : nil }
    /// `train.nf4_cache`, for the local workers.
    public var nf4Cache: String? { config.train.isRequested ? config.train.nf4Cache : nil }

    /// Runs the plan; returns the files written. `started` is called with the bound endpoint once
    /// workers can connect; `stopCheck` is asked all along and a reason it gives stops the run.
    public func run(stopCheck: @escaping () -> String? = { nil }, started: (String) throws -> Void = { _ in }) throws -> [String] {
        let store = try RunStore(path: state)
        var options = CoordinatorOptions(listen: listen)
        options.heartbeatInterval = heartbeat
        options.security = security
        if let job = generation {
            options.generationSettings = GenerationWireSettings(baseURL: job.generate.baseURL, timeout: job.generate.timeout,
                                                                apiKeyEnv: job.generate.apiKeyEnv, settings: job.generate.settings)
            options.apiKeyForWorkers = job.generate.apiKey
        }
        if let model = trainModel {
            options.modelHash = try ModelHash.of(directory: model)
            options.modelDirectory = model
        }
        var written: [String] = []
        let coordinator = try Coordinator(store: store, options: options)
        let report = self.report
        coordinator.report = { report($0 + "\n") }
        let events = onEvent ?? { report($0.line + "\n") }
        coordinator.onEvent = events
        coordinator.onStatus = { line in report(line.map { "\r" + $0 } ?? "\n") }
        coordinator.stopCheck = stopCheck
        report("[cluster] coordinator listening on \(coordinator.endpoint)\(security == nil ? "" : " (CURVE)"); state \(state)\n")
        try started(coordinator.endpoint)
        do {
            if let job = generation {
                try job.ingest(into: store, report: report)
                if retryFailed {
                    if let step = try store.trainingCheckpointStep() {
                        throw PipelineError("--retry-failed: training has already begun (checkpoint at step \(step) in \(state)) on the dataset made without those chunks; start a new state file to generate them again")
                    }
                    report("[generate] \(try store.requeueFailed()) failed chunks queued again\n")
                }
                let stage = try GenerationStage(store: store, requestsPerMinute: job.generate.rpm, tokensPerMinute: job.generate.tpm,
                                                tokenEstimate: job.tokenEstimate, budget: job.generate.budget)
                try coordinator.run(stage)
                report("[generate] " + (try job.writeDataset(from: store)) + "\n")
                written += [job.out, DatasetExport.testPath(for: job.out)]
                do { try job.checkFailures(in: store, report: report) } catch {
                    coordinator.finish(reason: "generation failed for every chunk")
                    throw error
                }
                let calls = LLMCallBook(store: store, executor: ClusterCallExecutor(
                    coordinator: coordinator, requestsPerMinute: job.generate.rpm, tokensPerMinute: job.generate.tpm,
                    budget: job.generate.budget, timeout: job.generate.timeout))
                try config.curate.run(on: job.out, store: store, calls: calls, report: report)
            }
            if config.train.isRequested {
                let plan = try TrainingPlan(config: config.train, checkOutput: false, report: report)
                let trainer = plan.trainer
                let driver = TrainingDriver(trainer: trainer, checkpoints: StateFileCheckpointStore(store: store), log: try plan.log(StateFileTrainLog(store: store)),
                                            output: plan.output, recoveryHint: "Lower train.lr and start the coordinator again.")
                driver.onEvent = events
                let stage = try TrainingStage(driver: driver, store: store)
                stage.onStep = { record, evalLoss in
                    var line = String(format: "[train] step %d/%d  loss %.4f  grad_norm %.3f  lr %.2e", record.step, trainer.totalSteps,
                                      record.loss, record.gradNorm, record.learningRate)
                    if let evalLoss { line += String(format: "  eval_loss %.4f", evalLoss) }
                    report(line + "\n")
                }
                coordinator.trainingSettings = Self.trainingSettings(trainer.options, dtype: trainer.engine.model.dtype)
                try coordinator.run(stage)
                // Per-step wall and compute time (what `bench/cluster.sh` reads): a file, not a
                // console line — forty steps of figures are no line for a log.
                let timing = plan.output.appendingPathComponent("step_timing.json")
                do {
                    try Data((stage.timingJSON + "\n").utf8).write(to: timing, options: .atomic)
                    written.append(timing.path)
                } catch {
                    report("[train] could not write \(timing.path): \(error.localizedDescription)\n")
                }
                written += plan.writtenFiles
                if let merged = config.export.merged { written.append(try plan.writeMerged(to: merged, report: report)) }
            }
        } catch let error as ClusterError {
            throw PipelineError(error.message)
        }
        coordinator.finish(reason: "the run is complete")
        return written
    }
}
