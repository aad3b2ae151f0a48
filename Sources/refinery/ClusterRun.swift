import Foundation
import RefineryCluster
import RefineryData
import RefineryModel
import RefineryStore
import RefineryTensor

/// One run of the whole pipeline at the coordinator, from a run config: ingest → generate
/// (workers) → dataset and split → curate → train (workers) → outputs. Every stage resumes from
/// the state file, so starting the coordinator again after a kill continues where it was.
struct ClusterRun {
    static let curateKeys: Set<String> = ["dedup", "threshold", "num_perm", "ngram"]
    static let exportKeys: Set<String> = ["merged"]

    let configPath: String
    let statePath: String?
    let listen: String
    let security: CurveServerSecurity?
    var heartbeat = 1.0

    /// What the run will do, resolved from the config before anything starts.
    struct Plan {
        var generation: GenerationJob?
        var train: TrainCommand?
        var curate: RunConfigSection
        /// Folder for the merged model (`export.merged`).
        var merged: String?
        var state: String
        var trainModel: String?
    }

    func plan() throws -> Plan {
        let data = try RunConfigSection(path: configPath, section: "data")
        let curate = try RunConfigSection(path: configPath, section: "curate")
        try curate.check(allowed: Self.curateKeys)
        let trainSection = try RunConfigSection(path: configPath, section: "train")
        let export = try RunConfigSection(path: configPath, section: "export")
        try export.check(allowed: Self.exportKeys)
        var generation: GenerationJob? = nil
        if try data.string("articles") != nil {
            generation = try GenerationJob(config: configPath, flags: GenerationFlags(state: statePath))
        }
        var train: TrainCommand? = nil
        var trainModel: String? = nil
        let trainModelPath = try trainSection.string("model"), trainDataPath = try trainSection.string("data")
        if trainModelPath != nil || trainDataPath != nil {
            train = try TrainCommand.parse(["--config", configPath])
            trainModel = try trainSection.string("model")
        }
        guard generation != nil || train != nil else {
            throw CommandError("\(configPath) asks for nothing: give data.articles (and a generate section) to make a dataset, and/or a train section to fine-tune")
        }
        let configuredState = try data.string("state")
        guard let state = statePath ?? generation?.state ?? configuredState else {
            throw CommandError("--state is required (or data.state in \(configPath))")
        }
        let merged = try export.string("merged")
        if merged != nil && train == nil { throw CommandError("\(configPath): export.merged needs a train section (there is no adapter to merge)") }
        return Plan(generation: generation, train: train, curate: curate, merged: merged, state: state, trainModel: trainModel)
    }

    /// Runs the plan. `started` is called with the bound endpoint once workers can connect;
    /// `stopCheck` is asked all along and a reason it gives stops the run.
    func run(plan given: Plan? = nil, stopCheck: @escaping () -> String? = { nil }, started: (String) throws -> Void = { _ in }) throws -> [String] {
        let plan = try given ?? plan()
        let store = try RunStore(path: plan.state)
        var options = CoordinatorOptions(listen: listen)
        options.heartbeatInterval = heartbeat
        options.security = security
        if let job = plan.generation {
            options.generationSettingsJSON = GenerationWireSettings(baseURL: job.baseURL, timeout: job.timeout, apiKeyEnv: job.apiKeyEnv,
                                                                    settings: job.settings).json
            options.apiKeyForWorkers = job.apiKey
        }
        if let model = plan.trainModel {
            options.modelHash = try ModelHash.of(directory: model)
            options.modelDirectory = model
        }
        var written: [String] = []
        let coordinator = try Coordinator(store: store, options: options)
        coordinator.report = { Output.progress($0 + "\n") }
        coordinator.stopCheck = stopCheck
        Output.progress("[cluster] coordinator listening on \(coordinator.endpoint)\(security == nil ? "" : " (CURVE)"); state \(plan.state)\n")
        try started(coordinator.endpoint)
        do {
            if let job = plan.generation {
                try job.ingest(into: store)
                let prompt = job.settings.prompt, maxTokens = job.settings.maxTokens
                let stage = try GenerationStage(store: store, requestsPerMinute: job.rpm, tokensPerMinute: job.tpm,
                                                tokenEstimate: { text in prompt.messages(extract: text).map(\.content.count).reduce(0, +) / 4 + maxTokens },
                                                budget: job.budget)
                try coordinator.run(stage)
                let (trainCount, testCount) = try DatasetExport.write(store: store, output: job.out, format: job.exportFormat,
                                                                      testFraction: job.testFraction, seed: job.seed)
                let usage = try store.totalUsage()
                let counts = try store.chunkCounts()
                Output.progress("[generate] \(counts[.done] ?? 0) chunks done, \(counts[.failed] ?? 0) failed; \(usage.requests) requests, $\(String(format: "%.4f", usage.usage.cost)); wrote \(job.out) (\(trainCount)) and \(DatasetExport.testPath(for: job.out)) (\(testCount))\n")
                written += [job.out, DatasetExport.testPath(for: job.out)]
                written += try curateDataset(job.out, section: plan.curate)
            }
            if let train = plan.train {
                let (trainer, output) = try train.prepare(checkOutput: false)
                let stage = try TrainingStage(trainer: trainer, store: store, output: output)
                stage.onStep = { record, evalLoss in
                    var line = String(format: "[train] step %d/%d  loss %.4f  grad_norm %.3f  lr %.2e", record.step, trainer.totalSteps,
                                      record.loss, record.gradNorm, record.learningRate)
                    if let evalLoss { line += String(format: "  eval_loss %.4f", evalLoss) }
                    Output.progress(line + "\n")
                }
                coordinator.trainingSettingsJSON = TrainingWireSettings(method: trainer.options.method, lora: trainer.options.lora,
                                                                    gradientCheckpointing: trainer.options.gradientCheckpointing,
                                                                       blasThreads: BLAS.threadCount).json
                try coordinator.run(stage)
                Output.progress("[train] timing \(stage.timingJSON)\n")
                let files = trainer.options.method == .lora ? ["adapter_config.json", "adapter_model.safetensors"] : ["model.safetensors", "config.json"]
                written += (files + ["train_log.jsonl"]).map { output.appendingPathComponent($0).path }
                if let merged = plan.merged, trainer.options.method == .lora, let adapter = trainer.engine.adapter {
                    let model = try LlamaModel(directory: trainer.modelDirectory)
                    model.merge(adapter)
                    let dtype = try Checkpoint(directory: trainer.modelDirectory).storedDType
                    try model.writeFolder(to: URL(fileURLWithPath: merged), copyingFrom: trainer.modelDirectory, dtype: dtype)
                    Output.progress("[export] merged the adapter into \(merged) (\(dtype.rawValue))\n")
                    written.append(URL(fileURLWithPath: merged).appendingPathComponent("model.safetensors").path)
                }
            }
        } catch let error as ClusterError {
            throw CommandError(error.message)
        }
        coordinator.finish(reason: "the run is complete")
        return written
    }

    /// The `curate` section on the generated train split: exact or MinHash dedup (keeps the
    /// first of each cluster). Returns the files it rewrote.
    private func curateDataset(_ path: String, section: RunConfigSection) throws -> [String] {
        guard let method = try section.string("dedup") else { return [] }
        let rows = try DatasetLines.read(path)
        let kept: [Int]
        switch method {
        case "exact": kept = Deduplication.exact(rows.map(\.sample))
        case "minhash":
            kept = Deduplication.minHash(rows.map(\.sample), threshold: try section.double("threshold") ?? 0.8,
                                         permutations: try section.int("num_perm") ?? 128, ngram: try section.int("ngram") ?? 5)
        default: throw CommandError("\(configPath): curate.dedup must be exact or minhash")
        }
        try DatasetLines.write(kept.map { rows[$0].row }, to: path)
        Output.progress("[curate] \(method) dedup kept \(kept.count) of \(rows.count) samples in \(path)\n")
        return []
    }
}
