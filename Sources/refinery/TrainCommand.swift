import ArgumentParser
import Foundation
import RefineryCore
import RefineryModel
import RefineryPipeline

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
    @Option(help: "Random seed (default 42).") var seed: Int?
    @Option(help: "Global gradient-norm clip, 0 to disable (default 1.0).") var maxGradNorm: Double?
    @Option(help: "AdamW weight decay (default 0.01).") var weightDecay: Double?
    @Option(help: "adamw (float32 moments, default) or adamw-8bit (8-bit blockwise moments as bitsandbytes' AdamW8bit: a quarter of the optimizer memory).") var optimizer: String?
    @Option(help: "Start from this PEFT LoRA adapter.") var initAdapter: String?
    @Option(help: "Held-out JSONL for eval loss.") var evalData: String?
    @Option(help: "Hold out this fraction of --data for eval (by a seeded hash of each sample; stable across reruns).") var evalSplit: Double?
    @Option(help: "Evaluate every N steps.") var evalEvery: Int?
    @Option(help: "Checkpoint every N steps (default 10; the newest two are kept).") var checkpointEvery: Int?
    @Flag(help: "Recompute each layer in the backward pass to save memory.") var gradientCheckpointing = false
    @Option(help: "tensorboard: also write TensorBoard event files to OUT/runs (loss, eval loss, grad norm, lr, tokens/s), readable while the run goes on.") var reportTo: String?
    @Option(help: "QLoRA: keep the 4-bit base in this folder; later runs on the same checkpoint read it instead of quantizing again.") var nf4Cache: String?
    @Option(help: "Precision of the matrix products: auto (the checkpoint's, default), float32 or bfloat16.") var dtype: String?
    @Option(help: "Dataset format (default auto).") var format: String?
    @Option(help: "Built-in chat template instead of the model's.") var template: String?
    @Option(help: "assistant (default) or all.") var trainOn: String?
    @Flag(help: "Print the expected peak memory by class (from config.json alone) and exit.") var dryRun = false
    @Flag(help: "Start even when the memory plan says the run will not fit in this machine's available memory.") var ignoreMemoryPlan = false
    @Option(help: "The most memory this run may use, e.g. 8G (default: what the machine has available).") var memoryLimit: String?
    @Flag(help: "Continue the run in --output from its newest checkpoint.") var resume = false
    @Flag(help: "Replace a previous run in --output.") var overwrite = false
    @OptionGroup var logFormat: LogFormatOption

    /// The flags the user gave, keyed like the config's `train` keys.
    var overrides: ConfigOverrides {
        let given: [String: (any Sendable)?] = [
            "model": model, "data": data, "output": output, "method": method, "lora_r": loraR, "lora_alpha": loraAlpha,
            "lora_dropout": loraDropout, "use_rslora": useRSLoRA ? true : nil, "targets": targets, "lr": lr, "scheduler": scheduler,
            "warmup_steps": warmupSteps, "steps": steps, "epochs": epochs, "micro_batch_size": microBatchSize, "grad_accum": gradAccum,
            "max_length": maxLength, "packing": packing ? true : nil, "no_shuffle": noShuffle ? true : nil, "seed": seed,
            "max_grad_norm": maxGradNorm, "weight_decay": weightDecay, "optimizer": optimizer, "init_adapter": initAdapter, "eval_data": evalData,
            "eval_split": evalSplit, "eval_every": evalEvery, "checkpoint_every": checkpointEvery,
            "gradient_checkpointing": gradientCheckpointing ? true : nil, "format": format, "template": template, "train_on": trainOn,
            "dtype": dtype, "nf4_cache": nf4Cache, "report_to": reportTo,
        ]
        return given.compactMapValues { $0 }
    }

    func run() throws {
        try reportingErrors {
            try logFormat.apply()
            let config = try RunConfig(path: config, overrides: ["train": overrides])
            let memory = try TrainingPlan.memoryPlan(config: config.train)
            let limit = try memoryLimit.map { try MemoryPlan.parseBytes($0, flag: "--memory-limit") }
            let available = [MemoryPlan.availableMemory(), limit].compactMap { $0 }.min()
            if dryRun {
                Output.line(memory.text)
                if let available {
                    Output.line(memory.refusal(available: available, options: config.train.options)
                                ?? "fits: \(MemoryPlan.gib(available)) available")
                }
                return
            }
            if !ignoreMemoryPlan, let available, let refusal = memory.refusal(available: available, options: config.train.options) {
                throw CommandError(refusal + " (--dry-run prints the plan; --ignore-memory-plan starts anyway)")
            }
            let plan = try TrainingPlan(config: config.train, checkOutput: true, resume: resume, overwrite: overwrite, report: Output.progress)
            try plan.runHere(resume: resume, events: Output.event) { p in
                var line = "\r[train] " + ProgressBar.render(done: p.record.step, total: p.totalSteps)
                    + String(format: " step %d/%d  loss %.4f  grad_norm %.3f  lr %.2e  %.0f tok/s  ETA %@", p.record.step, p.totalSteps, p.record.loss, p.record.gradNorm, p.record.learningRate,
                                  p.tokensPerSecond, DurationText.of(p.secondsRemaining))
                if let e = p.evalLoss { line += String(format: "  eval_loss %.4f", e) }
                Output.progress(line + (p.evalLoss != nil || p.record.step == p.totalSteps ? "\n" : ""))
            }
            Output.message("wrote " + plan.writtenFiles.joined(separator: ", "))
        }
    }
}
