import RefineryText

/// What trains.
public enum TrainingMethod: String, Sendable, CaseIterable {
    case lora, full, qlora

    /// LoRA and QLoRA train an adapter; full fine-tuning trains the base weights.
    public var trainsAdapter: Bool { self != .full }
    /// QLoRA holds the frozen base projections in 4-bit NF4.
    public var quantizesBase: Bool { self == .qlora }
}

/// Which optimizer updates the trained values.
public enum OptimizerChoice: String, Sendable, CaseIterable {
    /// AdamW with float32 moments (`torch.optim.AdamW`).
    case adamW = "adamw"
    /// AdamW with 8-bit blockwise moments (bitsandbytes' `AdamW8bit`): a quarter of the memory.
    case adamW8bit = "adamw-8bit"

    /// Reads a flag or config value; accepts transformers' `optim` names as well
    /// (`adamw_torch`, `adamw_bnb_8bit`, `adamw_8bit`).
    public init?(parsing text: String) {
        switch text.lowercased() {
        case "adamw", "adamw_torch", "adamw-torch": self = .adamW
        case "adamw-8bit", "adamw_8bit", "adamw8bit", "adamw_bnb_8bit", "adamw-bnb-8bit": self = .adamW8bit
        default: return nil
        }
    }
}

/// The knobs of a fine-tuning run (DESIGN §5 `train` flags).
public struct TrainingOptions: Sendable, Equatable {
    public var method: TrainingMethod = .lora
    public var optimizer: OptimizerChoice = .adamW
    public var lora = LoRAConfig()
    public var learningRate: Double = 2e-4
    public var schedule: LearningRateSchedule = .linear
    public var warmupSteps = 0
    /// Optimizer steps; when nil, `epochs` decides.
    public var steps: Int?
    public var epochs: Double = 1
    public var microBatchSize = 1
    public var gradientAccumulation = 1
    public var maxLength = 2048
    public var packing = false
    public var shuffle = true
    public var seed: UInt64 = 42
    /// nil or ≤ 0 disables clipping.
    public var maxGradNorm: Double? = 1.0
    public var weightDecay: Double = 0.01
    /// Evaluate every N steps (and after the last); nil: never.
    public var evalEvery: Int?
    /// Save the resumable state every N steps (and after the last), in `train` and the cluster alike.
    public var checkpointEvery = 10
    public var gradientCheckpointing = false
    /// Precision of the products (`auto` follows the checkpoint; see `DTypeChoice`).
    public var dtype: DTypeChoice = .auto
    public var trainOn: TrainOn = .assistant

    public init() {}

    /// Checks ranges; the message names the flag.
    public func validate() throws {
        func check(_ condition: Bool, _ message: String) throws { if !condition { throw ModelError(message) } }
        try check(learningRate > 0 && learningRate.isFinite, "--lr must be a positive number")
        try check(warmupSteps >= 0, "--warmup-steps must be ≥ 0")
        try check((steps ?? 1) > 0, "--steps must be positive")
        try check(epochs > 0, "--epochs must be positive")
        try check(microBatchSize > 0, "--micro-batch-size must be positive")
        try check(gradientAccumulation > 0, "--grad-accum must be positive")
        try check(maxLength >= 2, "--max-length must be at least 2")
        try check(weightDecay >= 0, "--weight-decay must be ≥ 0")
        try check((evalEvery ?? 1) > 0, "--eval-every must be positive")
        try check(checkpointEvery > 0, "--checkpoint-every must be positive")
        if method.trainsAdapter {
            try check(lora.rank > 0, "--lora-r must be positive")
            try check(lora.alpha > 0, "--lora-alpha must be positive")
            try check(lora.dropout >= 0 && lora.dropout < 1, "--lora-dropout must be in [0, 1)")
        }
    }
}
