import ArgumentParser
import Foundation
import RefineryModel
import RefineryText

/// `refinery train`: fine-tune on one machine (LoRA or full), DESIGN §5.
struct TrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train", abstract: "Fine-tune a model with LoRA or full fine-tuning on one machine.",
        discussion: "Flags override the `train:` section of --config. Writes OUT/adapter_config.json, OUT/adapter_model.safetensors (LoRA) or a model folder (full), OUT/train_log.jsonl and OUT/checkpoints/.")

    @Option(help: "Run config YAML (section `train`, keys named like the flags).") var config: String?
    @Option(help: "Base model folder.") var model: String?
    @Option(help: "Training JSONL (openai, sharegpt, alpaca, oasst or text).") var data: String?
    @Option(help: "Output folder.") var output: String?
    @Option(help: "lora, full or qlora.") var method: String?
    @Option(name: .customLong("lora-r"), help: "LoRA rank (default 16).") var loraR: Int?
    @Option(name: .customLong("lora-alpha"), help: "LoRA alpha (default 2·r).") var loraAlpha: Double?
    @Option(name: .customLong("lora-dropout"), help: "LoRA dropout (default 0).") var loraDropout: Double?
    @Flag(name: .customLong("use-rslora"), help: "Scale by α/√r (rsLoRA).") var useRSLoRA = false
    @Option(help: "Target modules: all-linear or a comma list such as q_proj,v_proj.") var targets: String?
    @Option(help: "Peak learning rate (default 2e-4).") var lr: Double?
    @Option(help: "linear, cosine or constant (default linear).") var scheduler: String?
    @Option(help: "Warmup steps (default 0).") var warmupSteps: Int?
    @Option(help: "Optimizer steps (overrides --epochs).") var steps: Int?
    @Option(help: "Epochs (default 1).") var epochs: Double?
    @Option(help: "Sequences per micro-batch (default 1).") var microBatchSize: Int?
    @Option(help: "Micro-batches per optimizer step (default 1).") var gradAccum: Int?
    @Option(help: "Maximum tokens per sample / packed row (default 2048).") var maxLength: Int?
    @Flag(help: "Pack samples into rows of --max-length (block-diagonal attention).") var packing = false
    @Flag(help: "Take samples in file order.") var noShuffle = false
    @Option(help: "Random seed (default 42).") var seed: UInt64?
    @Option(help: "Global gradient-norm clip, 0 to disable (default 1.0).") var maxGradNorm: Double?
    @Option(help: "AdamW weight decay (default 0.01).") var weightDecay: Double?
    @Option(help: "Start from this PEFT LoRA adapter.") var initAdapter: String?
    @Option(help: "Held-out JSONL for eval loss.") var evalData: String?
    @Option(help: "Hold out this fraction of --data for eval (by a seeded hash of each sample; stable across reruns).") var evalSplit: Double?
    @Option(help: "Evaluate every N steps.") var evalEvery: Int?
    @Option(help: "Checkpoint every N steps.") var checkpointEvery: Int?
    @Flag(help: "Recompute each layer in the backward pass to save memory.") var gradientCheckpointing = false
    @Option(help: "Dataset format (default auto).") var format: String?
    @Option(help: "Built-in chat template instead of the model's.") var template: String?
    @Option(help: "assistant (default) or all.") var trainOn: String?
    @Flag(help: "Continue the run in --output from its newest checkpoint.") var resume = false
    @Flag(help: "Replace a previous run in --output.") var overwrite = false

    static let configKeys: Set<String> = [
        "model", "data", "output", "method", "lora_r", "lora_alpha", "lora_dropout", "use_rslora", "targets", "lr",
        "scheduler", "warmup_steps", "steps", "epochs", "micro_batch_size", "grad_accum", "max_length", "packing",
        "no_shuffle", "shuffle", "seed", "max_grad_norm", "weight_decay", "init_adapter", "eval_data", "eval_every",
        "checkpoint_every", "gradient_checkpointing", "format", "template", "train_on", "eval_split",
    ]

    func run() throws {
        try reportingErrors { try train() }
    }

    private func train() throws {
        let (trainer, outputURL) = try prepare(checkOutput: true)
        let options = trainer.options
        try trainer.run(output: outputURL, resume: resume) { p in
            var line = String(format: "\r[train] step %d/%d  loss %.4f  grad_norm %.3f  lr %.2e  %.0f tok/s  ETA %@",
                              p.record.step, p.totalSteps, p.record.loss, p.record.gradNorm, p.record.learningRate,
                              p.tokensPerSecond, Self.duration(p.secondsRemaining))
            if let e = p.evalLoss { line += String(format: "  eval_loss %.4f", e) }
            Output.progress(line + (p.evalLoss != nil || p.record.step == p.totalSteps ? "\n" : ""))
        }
        let written = options.method == .lora ? ["adapter_config.json", "adapter_model.safetensors"] : ["model.safetensors", "config.json"]
        Output.line("wrote " + (written + ["train_log.jsonl"]).map { outputURL.appendingPathComponent($0).path }.joined(separator: ", "))
    }

    /// Resolves flags over the config, encodes and checks the datasets, loads the model and
    /// builds the trainer. `checkOutput`: refuse an output folder that holds a run unless
    /// `--resume` or `--overwrite` (the cluster keeps its training state in SQLite instead).
    func prepare(checkOutput: Bool) throws -> (Trainer, URL) {
        let file = try config.map { try RunConfigSection(path: $0, section: "train") }
        try file?.check(allowed: Self.configKeys)
        func pick<T>(_ flag: T?, _ key: String, _ read: (RunConfigSection, String) throws -> T?) throws -> T? {
            try configured(flag, file, key, read)
        }
        guard let modelPath = try pick(model, "model", { try $0.string($1) }) else { throw CommandError("--model is required (or train.model in --config)") }
        guard let dataPath = try pick(data, "data", { try $0.string($1) }) else { throw CommandError("--data is required (or train.data in --config)") }
        guard let outputPath = try pick(output, "output", { try $0.string($1) }) else { throw CommandError("--output is required (or train.output in --config)") }

        var options = TrainingOptions()
        let configRSLoRA = try file?.bool("use_rslora") ?? false
        let configPacking = try file?.bool("packing") ?? false
        let configNoShuffle = try file?.bool("no_shuffle") ?? false
        let configShuffle = try file?.bool("shuffle") ?? true
        let configCheckpointing = try file?.bool("gradient_checkpointing") ?? false
        let methodName = try pick(method, "method", { try $0.string($1) }) ?? "lora"
        guard let parsedMethod = TrainingMethod(rawValue: methodName) else { throw CommandError("--method must be lora, full or qlora") }
        options.method = parsedMethod
        let rank = try pick(loraR, "lora_r", { try $0.int($1) }) ?? 16
        options.lora = LoRAConfig(
            rank: rank, alpha: try pick(loraAlpha, "lora_alpha", { try $0.double($1) }) ?? Double(2 * rank),
            dropout: try pick(loraDropout, "lora_dropout", { try $0.double($1) }) ?? 0,
            useRSLoRA: useRSLoRA || configRSLoRA,
            targets: LoRATargets.parse(flag: try pick(targets, "targets", { try $0.strings($1)?.joined(separator: ",") }) ?? "all-linear"))
        options.learningRate = try pick(lr, "lr", { try $0.double($1) }) ?? 2e-4
        let schedulerName = try pick(scheduler, "scheduler", { try $0.string($1) }) ?? "linear"
        guard let schedule = LearningRateSchedule(rawValue: schedulerName) else { throw CommandError("--scheduler must be linear, cosine or constant") }
        options.schedule = schedule
        options.warmupSteps = try pick(warmupSteps, "warmup_steps", { try $0.int($1) }) ?? 0
        options.steps = try pick(steps, "steps", { try $0.int($1) })
        options.epochs = try pick(epochs, "epochs", { try $0.double($1) }) ?? 1
        options.microBatchSize = try pick(microBatchSize, "micro_batch_size", { try $0.int($1) }) ?? 1
        options.gradientAccumulation = try pick(gradAccum, "grad_accum", { try $0.int($1) }) ?? 1
        options.maxLength = try pick(maxLength, "max_length", { try $0.int($1) }) ?? 2048
        options.packing = packing || configPacking
        options.shuffle = !(noShuffle || configNoShuffle || !configShuffle)
        options.seed = try pick(seed, "seed", { try $0.int($1).map { UInt64(max(0, $0)) } }) ?? 42
        let clip = try pick(maxGradNorm, "max_grad_norm", { try $0.double($1) }) ?? 1.0
        options.maxGradNorm = clip > 0 ? clip : nil
        options.weightDecay = try pick(weightDecay, "weight_decay", { try $0.double($1) }) ?? 0.01
        options.evalEvery = try pick(evalEvery, "eval_every", { try $0.int($1) })
        options.checkpointEvery = try pick(checkpointEvery, "checkpoint_every", { try $0.int($1) })
        options.gradientCheckpointing = gradientCheckpointing || configCheckpointing
        let trainOnName = try pick(trainOn, "train_on", { try $0.string($1) }) ?? "assistant"
        guard let trainOnValue = TrainOn(rawValue: trainOnName) else { throw CommandError("--train-on must be assistant or all") }
        options.trainOn = trainOnValue
        try options.validate()

        let formatName = try pick(format, "format", { try $0.string($1) }) ?? "auto"
        let datasetFormat: DatasetFormat?
        if formatName == "auto" { datasetFormat = nil } else {
            guard let parsed = DatasetFormat(rawValue: formatName) else {
                throw CommandError("unknown --format \(formatName); use auto, \(DatasetFormat.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            datasetFormat = parsed
        }
        let outputURL = URL(fileURLWithPath: outputPath)
        if checkOutput { try OutputFolder.prepare(outputURL, resume: resume, overwrite: overwrite) }

        let modelURL = URL(fileURLWithPath: modelPath)
        let chat = try ChatTokenizer(directory: modelURL, templateName: try pick(template, "template", { try $0.string($1) }))
        let encoder = SampleEncoder(chat: chat, trainOn: options.trainOn, maxLength: options.maxLength)
        var trainSamples = try DatasetLoading.encode(path: dataPath, format: datasetFormat, encoder: encoder)
        var heldOut: [EncodedSample] = []
        if let fraction = try pick(evalSplit, "eval_split", { try $0.double($1) }) {
            guard fraction > 0 && fraction < 1 else { throw CommandError("--eval-split must be between 0 and 1") }
            let split = DatasetLoading.split(trainSamples, fraction: fraction, seed: options.seed)
            trainSamples = split.train
            heldOut = split.eval
            guard !trainSamples.isEmpty, !heldOut.isEmpty else {
                throw CommandError("--eval-split \(fraction) leaves an empty train or eval set with \(trainSamples.count + heldOut.count) samples")
            }
        }
        let llama = try LlamaModel(directory: modelURL)
        try DatasetLoading.checkMasks(trainSamples, path: dataPath, stopTokens: chat.stopTokenIDs.union(llama.config.eosTokenIDs), chat: chat)
        var evalSamples: [EncodedSample] = heldOut
        if let evalPath = try pick(evalData, "eval_data", { try $0.string($1) }) {
            evalSamples += try DatasetLoading.encode(path: evalPath, format: datasetFormat, encoder: encoder)
        }
        var adapter: LoRAAdapter? = nil
        if options.method == .lora {
            if let initPath = try pick(initAdapter, "init_adapter", { try $0.string($1) }) {
                adapter = try LoRAAdapter.load(directory: URL(fileURLWithPath: initPath), model: llama.config)
                options.lora = adapter?.config ?? options.lora
            } else {
                adapter = try LoRAAdapter.initialize(model: llama.config, config: options.lora, seed: options.seed)
            }
        }
        let trainer = try Trainer(model: llama, modelDirectory: modelURL, options: options, adapter: adapter, train: trainSamples, eval: evalSamples)
        let truncated = trainSamples.filter(\.truncated).count
        Output.progress("[train] \(trainSamples.count) samples (\(truncated) truncated to \(options.maxLength) tokens), \(trainSamples.map(\.trainedCount).reduce(0, +)) trained tokens; \(trainer.totalSteps) steps of \(options.microBatchSize)×\(options.gradientAccumulation); \(trainer.engine.parameters.map(\.value.count).reduce(0, +)) trainable parameters\n")
        return (trainer, outputURL)
    }

    static func duration(_ seconds: Double) -> String {
        guard seconds.isFinite else { return "?" }
        let s = Int(seconds.rounded())
        return s >= 3600 ? "\(s / 3600)h\((s % 3600) / 60)m" : (s >= 60 ? "\(s / 60)m\(s % 60)s" : "\(s)s")
    }
}

/// Reading, encoding and checking datasets for training.
enum DatasetLoading {
    /// Splits by a seeded FNV-1a hash of each sample's token ids (DESIGN §3.10): the same sample
    /// lands on the same side on every run.
    static func split(_ samples: [EncodedSample], fraction: Double, seed: UInt64) -> (train: [EncodedSample], eval: [EncodedSample]) {
        var train: [EncodedSample] = [], eval: [EncodedSample] = []
        for sample in samples {
            var hash: UInt64 = 0xCBF2_9CE4_8422_2325 ^ seed
            for id in sample.ids {
                hash ^= UInt64(truncatingIfNeeded: id)
                hash = hash &* 0x0000_0100_0000_01B3
            }
            if Double(hash >> 11) / Double(1 << 53) < fraction { eval.append(sample) } else { train.append(sample) }
        }
        return (train, eval)
    }

    static func encode(path: String, format: DatasetFormat?, encoder: SampleEncoder) throws -> [EncodedSample] {
        var samples: [EncodedSample] = []
        try DatasetReader(format: format).read(path: path) { sample, line in
            do { samples.append(try encoder.encode(sample)) } catch let error as TextError {
                throw CommandError("\(path):\(line): \(error.message)")
            }
        }
        guard !samples.isEmpty else { throw CommandError("\(path) holds no samples") }
        return samples
    }

    /// Refuses datasets whose masks train nothing or never train an end-of-turn/EOS token.
    static func checkMasks(_ samples: [EncodedSample], path: String, stopTokens: Set<Int>, chat: ChatTokenizer) throws {
        let trained = samples.map(\.trainedCount).reduce(0, +)
        if trained == 0 {
            throw CommandError("no token of \(path) carries loss: with train_on assistant only assistant messages train, and none was found (or --max-length cut them all off). Add assistant turns or use --train-on all.")
        }
        let trainsStop = samples.contains { sample in
            sample.ids.indices.dropFirst().contains { sample.trained[$0] && stopTokens.contains(sample.ids[$0]) }
        }
        if !trainsStop {
            let names = stopTokens.compactMap { chat.tokenizer.token(of: $0) }.sorted().joined(separator: ", ")
            throw CommandError("the loss masks of \(path) never include an end-of-turn/EOS token (\(names.isEmpty ? "the tokenizer names none" : names)), so the model would never learn to stop. Use a chat template that ends assistant turns with a special token (see --template), or check tokenizer_config.json's eos_token.")
        }
    }
}

/// Guards an output folder against silently overwriting a previous run.
enum OutputFolder {
    static let runFiles = ["train_log.jsonl", "adapter_model.safetensors", "adapter_config.json", "model.safetensors", "checkpoints"]

    static func prepare(_ url: URL, resume: Bool, overwrite: Bool) throws {
        let fm = FileManager.default
        let present = runFiles.filter { fm.fileExists(atPath: url.appendingPathComponent($0).path) }
        if resume {
            if !fm.fileExists(atPath: url.appendingPathComponent("checkpoints").path) {
                Output.progress("[train] no checkpoint in \(url.path): starting from step 0\n")
            }
            return
        }
        guard !present.isEmpty else { return }
        guard overwrite else {
            throw CommandError("\(url.path) already holds a run (\(present.joined(separator: ", "))); pass --resume to continue it or --overwrite to replace it")
        }
        for name in present { try fm.removeItem(at: url.appendingPathComponent(name)) }
    }
}
