import Foundation
import RefineryCore
import RefineryModel
import RefineryTensor
import RefineryText

/// `refinery-bench memory MODEL_DIR lora|qlora|full [SEQ_LEN] [SEQUENCES] [STEPS]`: optimizer steps
/// of SEQUENCES random sequences of SEQ_LEN tokens (one micro-batch) with gradient checkpointing,
/// LoRA r=16 on all linear modules over a base as stored or in NF4 (or full fine-tuning), products
/// in BENCH_DTYPE (default bfloat16), AdamW as BENCH_OPTIMIZER says (adamw or adamw-8bit); prints
/// the load time, each step's seconds, tokens/s, the peak resident memory and the memory plan's
/// prediction for the same run. BENCH_NF4_CACHE=DIR keeps QLoRA's 4-bit base there (`--nf4-cache`).
enum MemoryBench {
    static func run(directory: String, method: String, sequenceLength: Int, sequences: Int, steps: Int) throws {
        guard let trainingMethod = TrainingMethod(rawValue: method) else {
            throw CoreError("memory: the method is lora, qlora or full, not \(method)")
        }
        let dtype: ComputeDType = ProcessInfo.processInfo.environment["BENCH_DTYPE"] == "float32" ? .float32 : .bfloat16
        var options = TrainingOptions()
        options.method = trainingMethod
        options.lora = LoRAConfig(rank: 16, alpha: 32)
        options.gradientCheckpointing = true
        options.maxLength = sequenceLength
        options.microBatchSize = sequences
        options.shuffle = false
        options.steps = steps
        options.dtype = .fixed(dtype)
        options.optimizer = OptimizerChoice(parsing: ProcessInfo.processInfo.environment["BENCH_OPTIMIZER"] ?? "adamw") ?? .adamW
        let url = URL(fileURLWithPath: directory)
        let plan = MemoryPlan(config: try ModelConfig.load(directory: url), options: options, dtype: dtype)
        let loadStart = DispatchTime.now().uptimeNanoseconds
        // BENCH_NF4_CACHE=DIR: QLoRA's 4-bit base kept in DIR between runs.
        let cache = ProcessInfo.processInfo.environment["BENCH_NF4_CACHE"].map { NF4Cache(directory: URL(fileURLWithPath: $0)) }
        let model = try LlamaModel(directory: url, dtype: .fixed(dtype), keepFloatWeights: trainingMethod == .full,
                                   projections: trainingMethod.quantizesBase ? .nf4 : .asStored, nf4Cache: cache)
        if let note = model.nf4CacheReport { FileHandle.standardError.write(Data("[memory] \(note)\n".utf8)) }
        let loadSeconds = Double(DispatchTime.now().uptimeNanoseconds - loadStart) / 1e9
        let loadedMegabytes = peakResidentMegabytes()
        var generator = SplitMix64(seed: 3)
        let samples = (0..<sequences).map { _ in
            EncodedSample(ids: (0..<sequenceLength).map { _ in Int(generator.next() % UInt64(model.config.vocabSize)) },
                          trained: Array(repeating: true, count: sequenceLength))
        }
        let trainer = try Trainer(model: model, modelDirectory: url, options: options,
                                  adapter: trainingMethod.trainsAdapter ? try LoRAAdapter.initialize(model: model.config, config: options.lora, seed: 1) : nil,
                                  train: samples, eval: [])
        var seconds: [Double] = []
        var losses: [Double] = []
        for step in 0..<steps {
            let start = DispatchTime.now().uptimeNanoseconds
            losses.append(try trainer.runStep().loss)
            seconds.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
            FileHandle.standardError.write(Data("[memory] \(method) step \(step + 1)/\(steps): \(String(format: "%.1f", seconds.last ?? 0)) s, peak RSS \(String(format: "%.0f", peakResidentMegabytes())) MB\n".utf8))
        }
        let tokens = Double(sequenceLength * sequences)
        print("{\"method\": \"\(method)\", \"optimizer\": \"\(options.optimizer.rawValue)\", \"dtype\": \"\(dtype.rawValue)\", \"load_seconds\": \(loadSeconds), \"rss_after_load_mb\": \(loadedMegabytes), "
              + "\"step_seconds\": \(seconds), \"tokens_per_second\": \(tokens / median(seconds)), \"losses\": \(losses), "
              + "\"peak_rss_mb\": \(peakResidentMegabytes()), \"planned_mb\": \(Double(plan.total) / 1_048_576)}")
    }
}
