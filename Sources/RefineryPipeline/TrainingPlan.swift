import Foundation
import RefineryCore
import RefineryData
import RefineryModel
import RefineryTensor
import RefineryText

/// Fine-tuning resolved from the config's `train` section: the datasets read, encoded and
/// checked, the model loaded and the trainer built. Used by `train` on one machine and by the
/// coordinator of a cluster.
public struct TrainingPlan {
    public let trainer: Trainer
    public let output: URL
    /// Whether the run also writes TensorBoard event files (`train.report_to`).
    public let reportToTensorBoard: Bool
    public let config: TrainConfig

    /// The memory plan of `config` from the model's `config.json` alone (no weights read); the
    /// precision `auto` follows the config's `torch_dtype` (float32 when it names none).
    public static func memoryPlan(config: TrainConfig) throws -> MemoryPlan {
        guard let modelPath = config.model else { throw PipelineError("--model is required (or train.model in --config)") }
        let options = config.options
        let model = try ModelConfig.load(directory: URL(fileURLWithPath: modelPath))
        let dtype: ComputeDType
        switch options.dtype {
        case .fixed(let fixed): dtype = fixed
        case .auto: dtype = model.storedDType == "bfloat16" ? .bfloat16 : .float32
        }
        return MemoryPlan(config: model, options: options, dtype: dtype)
    }

    /// `checkOutput`: refuse an output folder that holds a run unless `resume` or `overwrite`
    /// (the cluster keeps its training state in SQLite instead and passes false).
    public init(config: TrainConfig, checkOutput: Bool, resume: Bool = false, overwrite: Bool = false, report: ProgressReport) throws {
        guard let modelPath = config.model else { throw PipelineError("--model is required (or train.model in --config)") }
        guard let dataPath = config.data else { throw PipelineError("--data is required (or train.data in --config)") }
        guard let outputPath = config.output else { throw PipelineError("--output is required (or train.output in --config)") }
        var options = config.options
        let output = URL(fileURLWithPath: outputPath)
        if checkOutput { try OutputFolder.prepare(output, resume: resume, overwrite: overwrite, report: report) }

        let modelURL = URL(fileURLWithPath: modelPath)
        let chat = try ChatTokenizer(directory: modelURL, templateName: config.template)
        let encoder = SampleEncoder(chat: chat, trainOn: options.trainOn, maxLength: options.maxLength)
        var trainSamples = try DatasetLoading.encode(path: dataPath, format: config.format, encoder: encoder)
        var heldOut: [EncodedSample] = []
        if let fraction = config.evalSplit {
            let split = DatasetLoading.split(trainSamples, fraction: fraction, seed: options.seed)
            trainSamples = split.train
            heldOut = split.eval
            guard !trainSamples.isEmpty, !heldOut.isEmpty else {
                throw PipelineError("--eval-split \(fraction) leaves an empty train or eval set with \(trainSamples.count + heldOut.count) samples")
            }
        }
        let llama = try LlamaModel(directory: modelURL, dtype: options.dtype, keepFloatWeights: options.method == .full,
                                   projections: options.method.quantizesBase ? .nf4 : .asStored,
                                   nf4Cache: options.method.quantizesBase ? config.nf4Cache.map { NF4Cache(directory: URL(fileURLWithPath: $0)) } : nil)
        if let note = llama.nf4CacheReport { report("[train] \(note)\n") }
        try DatasetLoading.checkMasks(trainSamples, path: dataPath, stopTokens: chat.stopTokenIDs.union(llama.config.eosTokenIDs), chat: chat)
        var evalSamples = heldOut
        if let evalPath = config.evalData {
            evalSamples += try DatasetLoading.encode(path: evalPath, format: config.format, encoder: encoder)
        }
        var adapter: LoRAAdapter? = nil
        if options.method.trainsAdapter {
            if let initPath = config.initAdapter {
                adapter = try LoRAAdapter.load(directory: URL(fileURLWithPath: initPath), model: llama.config)
                options.lora = adapter?.config ?? options.lora
            } else {
                adapter = try LoRAAdapter.initialize(model: llama.config, config: options.lora, seed: options.seed)
            }
        }
        trainer = try Trainer(model: llama, modelDirectory: modelURL, options: options, adapter: adapter, train: trainSamples, eval: evalSamples)
        self.output = output
        reportToTensorBoard = config.reportToTensorBoard
        self.config = config
        let truncated = trainSamples.filter(\.truncated).count
        report("[train] \(trainSamples.count) samples (\(truncated) truncated to \(options.maxLength) tokens), \(trainSamples.map(\.trainedCount).reduce(0, +)) trained tokens; \(trainer.totalSteps) steps of \(options.microBatchSize)×\(options.gradientAccumulation); \(trainer.engine.parameters.map(\.value.count).reduce(0, +)) trainable parameters; products in \(llama.dtype.rawValue)\(llama.hasQuantizedProjections ? " (base projections in 4-bit NF4)" : "") on \(ProductBackend.current.libraryVersion)\n")
    }

    /// The files a finished run leaves in `output`.
    public var writtenFiles: [String] {
        let files = trainer.options.method.trainsAdapter ? ["adapter_config.json", "adapter_model.safetensors"] : ["model.safetensors", "config.json"]
        return (files + ["train_log.jsonl"]).map { output.appendingPathComponent($0).path }
    }

    /// `rows` as the run's log: also into TensorBoard event files in `output/runs` when asked for.
    public func log(_ rows: any TrainLog) throws -> any TrainLog {
        reportToTensorBoard ? try TensorBoardTrainLog(wrapping: rows, directory: output.appendingPathComponent("runs")) : rows
    }

    /// Trains on this machine with checkpoint folders under `output` (`resume`: from the newest);
    /// `events` hears of each checkpoint written.
    public func runHere(resume: Bool, events: @escaping (RunEvent) -> Void = { _ in }, progress: (TrainingProgress) throws -> Void) throws {
        let driver = TrainingDriver(trainer: trainer, checkpoints: FolderCheckpointStore(output: output),
                                    log: try log(FileTrainLog(url: output.appendingPathComponent("train_log.jsonl"))), output: output,
                                    recoveryHint: "Lower --lr and continue with --resume.")
        driver.onEvent = events
        try driver.runHere(resume: resume, progress: progress)
    }

    /// Merges the trained adapter into the base model and writes the folder `merged` in the base
    /// model's dtype; returns the weights file written.
    public func writeMerged(to merged: String, report: ProgressReport) throws -> String {
        guard trainer.options.method.trainsAdapter, let adapter = trainer.engine.adapter else {
            throw PipelineError("export.merged needs a LoRA or QLoRA run (a full fine-tune writes the model folder itself)")
        }
        let model: LlamaModel, dtype: SafetensorsDType
        if trainer.options.method.quantizesBase {
            // Never into 4-bit weights: the NF4 base de-quantized (what the adapter was trained against), in bfloat16.
            model = try LlamaModel(directory: trainer.modelDirectory, dtype: .float32, projections: .nf4RoundTrip)
            dtype = .bf16
        } else {
            // The run is over: the base weights the trainer held frozen take the adapter in place.
            model = trainer.model
            dtype = try Checkpoint(directory: trainer.modelDirectory).storedDType
        }
        model.merge(adapter)
        try model.writeFolder(to: URL(fileURLWithPath: merged), copyingFrom: trainer.modelDirectory, dtype: dtype)
        let into = trainer.options.method.quantizesBase ? "the NF4-dequantized base" : "the base"
        report("[export] merged the adapter into \(into), wrote \(merged) (\(dtype.rawValue))\n")
        return URL(fileURLWithPath: merged).appendingPathComponent("model.safetensors").path
    }
}

/// Reading, encoding, splitting and checking datasets for training.
public enum DatasetLoading {
    /// Splits by a seeded FNV-1a hash of each sample's token ids (DESIGN §3.10): the same sample
    /// lands on the same side on every run.
    public static func split(_ samples: [EncodedSample], fraction: Double, seed: UInt64) -> (train: [EncodedSample], eval: [EncodedSample]) {
        var train: [EncodedSample] = [], eval: [EncodedSample] = []
        for sample in samples {
            var hasher = StableHasher(seed: seed)
            for id in sample.ids { hasher.combine(word: UInt64(truncatingIfNeeded: id)) }
            if Double(hasher.value >> 11) / Double(1 << 53) < fraction { eval.append(sample) } else { train.append(sample) }
        }
        return (train, eval)
    }

    /// Every sample of the JSONL file at `path`, encoded; errors name the line.
    public static func encode(path: String, format: DatasetFormat?, encoder: SampleEncoder) throws -> [EncodedSample] {
        var samples: [EncodedSample] = []
        try DatasetReader(format: format).read(path: path) { sample, line in
            do { samples.append(try encoder.encode(sample)) } catch let error as TextError {
                throw PipelineError("\(path):\(line): \(error.message)")
            }
        }
        guard !samples.isEmpty else { throw PipelineError("\(path) holds no samples") }
        return samples
    }

    /// Refuses datasets whose masks train nothing or never train an end-of-turn/EOS token.
    public static func checkMasks(_ samples: [EncodedSample], path: String, stopTokens: Set<Int>, chat: ChatTokenizer) throws {
        let trained = samples.map(\.trainedCount).reduce(0, +)
        if trained == 0 {
            throw PipelineError("no token of \(path) carries loss: with train_on assistant only assistant messages train, and none was found (or --max-length cut them all off). Add assistant turns or use --train-on all.")
        }
        let trainsStop = samples.contains { sample in
            sample.ids.indices.dropFirst().contains { sample.trained[$0] && stopTokens.contains(sample.ids[$0]) }
        }
        if !trainsStop {
            let names = stopTokens.compactMap { chat.tokenizer.token(of: $0) }.sorted().joined(separator: ", ")
            throw PipelineError("the loss masks of \(path) never include an end-of-turn/EOS token (\(names.isEmpty ? "the tokenizer names none" : names)), so the model would never learn to stop. Use a chat template that ends assistant turns with a special token (see --template), or check tokenizer_config.json's eos_token.")
        }
    }
}

/// Guards an output folder against silently overwriting a previous run.
public enum OutputFolder {
    public static let runFiles = ["train_log.jsonl", "adapter_model.safetensors", "adapter_config.json", "model.safetensors", "checkpoints"]

    public static func prepare(_ url: URL, resume: Bool, overwrite: Bool, report: ProgressReport) throws {
        let fm = FileManager.default
        let present = runFiles.filter { fm.fileExists(atPath: url.appendingPathComponent($0).path) }
        if resume {
            if !fm.fileExists(atPath: url.appendingPathComponent("checkpoints").path) {
                report("[train] no checkpoint in \(url.path): starting from step 0\n")
            }
            return
        }
        guard !present.isEmpty else { return }
        guard overwrite else {
            throw PipelineError("\(url.path) already holds a run (\(present.joined(separator: ", "))); pass --resume to continue it or --overwrite to replace it")
        }
        for name in present {
            do { try fm.removeItem(at: url.appendingPathComponent(name)) } catch {
                throw PipelineError("cannot remove \(url.appendingPathComponent(name).path): \(error.localizedDescription)")
            }
        }
    }
}
