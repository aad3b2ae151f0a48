import COpenBLAS
import Foundation
import RefineryCore
import RefineryModel
import RefineryTensor

// Measures Refinery on a model folder; bench/forward.sh and bench/train.sh run it side by side
// with PyTorch. Each mode prints one JSON line.
//   refinery-bench forward MODEL_DIR [SEQ_LEN] [ITERATIONS]
//   refinery-bench train MODEL_DIR lora|full [SEQ_LEN] [ITERATIONS]   (LoRA r=16 on all linear modules)
//   refinery-bench sgemm [N] [ITERATIONS]                              (this machine's sgemm GFLOP/s)
//   refinery-bench gemm M N K [NN|NT|TN] [ITERATIONS]                  (one product shape)
//   refinery-bench decode MODEL_DIR [PROMPT] [NEW_TOKENS] [ITERS] [BATCH] (greedy decoding)
//   refinery-bench minhash FILE THRESHOLD NUM_PERM NGRAM                (MinHash-LSH dedup of {"id", "text"} lines)
//   refinery-bench embed MODEL_DIR FILE OUT                            (sentence embeddings of {"text"} lines)
//   refinery-bench classify MODEL_DIR FILE OUT                         (BERT-family classifier logits of {"text"} lines)
//   refinery-bench memory MODEL_DIR lora|qlora [SEQ] [SEQUENCES] [STEPS] (peak memory and step time, checkpointing on)
//   refinery-bench shapes MODEL_DIR [SEQ_LEN] [ITERATIONS]              (every product shape of a
//                      training step in float32 and bfloat16, against this machine's measured peaks)

let arguments = CommandLine.arguments
if arguments.count >= 6 && arguments[1] == "minhash" {
    guard let threshold = Double(arguments[3]), let permutations = Int(arguments[4]), let ngram = Int(arguments[5]) else {
        fail("minhash FILE THRESHOLD NUM_PERM NGRAM")
    }
    do { try MinHashBench.run(path: arguments[2], threshold: threshold, permutations: permutations, ngram: ngram) } catch { fail("\(error)") }
    exit(0)
}
if arguments.count >= 4 && arguments[1] == "memory" {
    do {
        try MemoryBench.run(directory: arguments[2], method: arguments[3], sequenceLength: arguments.count > 4 ? Int(arguments[4]) ?? 512 : 512,
                            sequences: arguments.count > 5 ? Int(arguments[5]) ?? 8 : 8, steps: arguments.count > 6 ? Int(arguments[6]) ?? 2 : 2)
    } catch {
        fail("\(error)")
    }
    exit(0)
}
if arguments.count >= 5 && arguments[1] == "classify" {
    do { try ClassifyBench.run(model: arguments[2], path: arguments[3], output: arguments[4]) } catch { fail("\(error)") }
    exit(0)
}
if arguments.count >= 5 && arguments[1] == "embed" {
    do { try EmbedBench.run(model: arguments[2], path: arguments[3], output: arguments[4]) } catch { fail("\(error)") }
    exit(0)
}
if arguments.count >= 3 && arguments[1] == "shapes" {
    do {
        try ProductShapeReport.run(directory: arguments[2], sequenceLength: arguments.count > 3 ? Int(arguments[3]) ?? 512 : 512,
                                   iterations: arguments.count > 4 ? Int(arguments[4]) ?? 5 : 5)
    } catch {
        fail("\(error)")
    }
    exit(0)
}
if arguments.count >= 2 && arguments[1] == "sgemm" {
    let n = arguments.count > 2 ? Int(arguments[2]) ?? 2048 : 2048
    let iterations = arguments.count > 3 ? Int(arguments[3]) ?? 5 : 5
    let a = Tensor(shape: [n, n], values: (0..<(n * n)).map { Float($0 % 7) * 0.1 })
    let b = a.copy(), c = Tensor(zeros: [n, n])
    let threads = BLAS.threadCount, flops = 2 * Double(n * n * n)
    // OpenBLAS's own threading, then Refinery's cut over single-threaded OpenBLAS (what training
    // uses); the peak is the better of the two.
    openblas_set_num_threads(Int32(threads))
    let library = gflops(flops: flops, iterations: iterations) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(n), Int32(n), Int32(n), 1, a.pointer, Int32(n),
                    b.pointer, Int32(n), 0, c.pointer, Int32(n))
    }.gflops
    let refinery = gflops(flops: flops, iterations: iterations) {
        BLAS.gemm(transA: false, transB: true, m: n, n: n, k: n, a: a.pointer, lda: n, b: b.pointer, ldb: n, c: c.pointer, ldc: n)
    }.gflops
    print("{\"gflops_median\": \(max(library, refinery)), \"openblas_threaded_gflops\": \(library), \"refinery_split_gflops\": \(refinery), \"n\": \(n), \"blas_threads\": \(threads)}")
    exit(0)
}
if arguments.count >= 5 && arguments[1] == "gemm" {
    // One product shape through Refinery's cut (BLAS.gemm, or BLAS.gemmBF16 with a last argument
    // bf16): refinery-bench gemm M N K [NN|NT|TN] [ITERATIONS] [fp32|bf16]
    guard let m = Int(arguments[2]), let n = Int(arguments[3]), let k = Int(arguments[4]) else { fail("gemm M N K: integers") }
    let layout = arguments.count > 5 ? arguments[5] : "NT"
    let iterations = arguments.count > 6 ? Int(arguments[6]) ?? 20 : 20
    let (transA, transB) = (layout.first == "T", layout.last == "T")
    let a = Tensor(shape: [m * k], values: (0..<(m * k)).map { Float($0 % 7) * 0.1 })
    let b = Tensor(shape: [k * n], values: (0..<(k * n)).map { Float($0 % 5) * 0.1 })
    let c = Tensor(zeros: [m, n])
    let bfloat16 = arguments.count > 7 && arguments[7] == "bf16"
    let a16 = BFloat16Storage(rounding: a.pointer, count: m * k), b16 = BFloat16Storage(rounding: b.pointer, count: k * n)
    let result = gflops(flops: 2 * Double(m * n * k), iterations: iterations) {
        if bfloat16 {
            BLAS.gemmBF16(transA: transA, transB: transB, m: m, n: n, k: k, a: a16.pointer, lda: transA ? m : k,
                          b: b16.pointer, ldb: transB ? k : n, c: c.pointer, ldc: n)
        } else {
            BLAS.gemm(transA: transA, transB: transB, m: m, n: n, k: k, a: a.pointer, lda: transA ? m : k,
                      b: b.pointer, ldb: transB ? k : n, c: c.pointer, ldc: n)
        }
    }
    print("{\"gflops_median\": \(result.gflops), \"milliseconds_median\": \(result.seconds * 1e3)}")
    exit(0)
}
// Greedy decoding: refinery-bench decode MODEL_DIR [PROMPT] [NEW_TOKENS] [ITERS] [BATCH]
// BATCH sequences (different random prompts of PROMPT tokens) are decoded together.
if arguments.count >= 3 && arguments[1] == "decode" {
    let promptLength = arguments.count > 3 ? Int(arguments[3]) ?? 32 : 32
    let newTokens = arguments.count > 4 ? Int(arguments[4]) ?? 128 : 128
    let iterations = arguments.count > 5 ? Int(arguments[5]) ?? 3 : 3
    let batch = arguments.count > 6 ? Int(arguments[6]) ?? 1 : 1
    do {
        let model = try LlamaModel(directory: URL(fileURLWithPath: arguments[2]), dtype: try benchDType())
        var generator = SplitMix64(seed: 5)
        let options = SamplingOptions(maxNewTokens: newTokens)
        let prompts = (0..<batch).map { _ in
            ((0..<promptLength).map { _ in Int(generator.next() % UInt64(model.config.vocabSize)) }, options)
        }
        func run() throws {
            let outputs = try model.generate(prompts: prompts, batchSize: batch)
            if outputs.contains(where: { $0.count != newTokens }) { fail("a sequence did not generate \(newTokens) tokens") }
        }
        try run()  // warm-up
        var seconds: [Double] = []
        for _ in 0..<iterations {
            let start = DispatchTime.now().uptimeNanoseconds
            try run()
            seconds.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
        }
        print("{\"tokens_per_second_median\": \(Double(batch * newTokens) / median(seconds)), \"batch\": \(batch), \"seconds\": \(seconds), \"peak_rss_mb\": \(peakResidentMegabytes())}")
    } catch {
        fail("\(error)")
    }
    exit(0)
}

if arguments.count >= 4 && arguments[1] == "optimizer" {
    // One AdamW step over every weight of MODEL_DIR (full fine-tuning's parameters), float32 or
    // 8-bit moments, random gradients: seconds per step and the moments' bytes.
    let eightBit = arguments[3] == "adamw-8bit"
    let iterations = arguments.count > 4 ? Int(arguments[4]) ?? 5 : 5
    do {
        let model = try LlamaModel(directory: URL(fileURLWithPath: arguments[2]), keepFloatWeights: true)
        let engine = try GradientEngine(model: model, adapter: nil, trainsBase: true)
        var generator = SplitMix64(seed: 7)
        for parameter in engine.parameters {
            for i in 0..<parameter.gradient.count { parameter.gradient.pointer[i] = Float(Int64(generator.next() % 2001) - 1000) * 1e-6 }
        }
        let optimizer = AdamW(eightBit: eightBit)
        optimizer.step(engine.parameters, learningRate: 1e-4)  // warm-up: allocates the moments
        var seconds: [Double] = []
        for _ in 0..<iterations {
            let start = DispatchTime.now().uptimeNanoseconds
            optimizer.step(engine.parameters, learningRate: 1e-4)
            seconds.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
        }
        let stateBytes = optimizer.stateEntries().reduce(0) { $0 + $1.bytes.count }
        print("{\"seconds_median\": \(median(seconds)), \"seconds\": \(seconds), \"state_mb\": \(Double(stateBytes) / 1e6), "
              + "\"values\": \(engine.parameters.map(\.value.count).reduce(0, +)), \"peak_rss_mb\": \(peakResidentMegabytes())}")
    } catch {
        fail("\(error)")
    }
    exit(0)
}

if arguments.count >= 4 && arguments[1] == "train" {
    let method = arguments[3]
    let sequenceLength = arguments.count > 4 ? Int(arguments[4]) ?? 512 : 512
    let iterations = arguments.count > 5 ? Int(arguments[5]) ?? 3 : 3
    do {
        let model = try LlamaModel(directory: URL(fileURLWithPath: arguments[2]), dtype: try benchDType(),
                                   keepFloatWeights: method == "full")
        let lora = LoRAConfig(rank: 16, alpha: 32, dropout: 0, targets: .allLinear)
        let adapter = method == "lora" ? try LoRAAdapter.initialize(model: model.config, config: lora, seed: 1) : nil
        let engine = try GradientEngine(model: model, adapter: adapter, trainsBase: method == "full")
        // BENCH_OPTIMIZER=adamw-8bit: 8-bit moments.
        let optimizer = AdamW(eightBit: ProcessInfo.processInfo.environment["BENCH_OPTIMIZER"] == "adamw-8bit")
        var generator = SplitMix64(seed: 3)
        let ids = (0..<sequenceLength).map { _ in Int(generator.next() % UInt64(model.config.vocabSize)) }
        let sequence = TrainingSequence(ids: ids, trained: Array(repeating: true, count: sequenceLength))
        func step() throws {
            engine.zeroGradients()
            try engine.accumulate(sequence, scale: 1 / Float(sequenceLength - 1))
            _ = GradientClipping.clip(engine.parameters, maxNorm: 1)
            optimizer.step(engine.parameters, learningRate: 1e-4)
        }
        if ProcessInfo.processInfo.environment["BENCH_PHASES"] != nil {
            for _ in 0..<3 {
                var t0 = DispatchTime.now().uptimeNanoseconds
                _ = try engine.loss(sequence)
                let forward = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
                t0 = DispatchTime.now().uptimeNanoseconds
                try engine.accumulate(sequence, scale: 1)
                let both = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
                t0 = DispatchTime.now().uptimeNanoseconds
                _ = GradientClipping.clip(engine.parameters, maxNorm: 1)
                optimizer.step(engine.parameters, learningRate: 1e-4)
                let update = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
                FileHandle.standardError.write(Data("forward+loss \(forward)s  forward+backward \(both)s  clip+adam \(update)s\n".utf8))
            }
        }
        try step()  // warm-up
        var seconds: [Double] = []
        for _ in 0..<iterations {
            let start = DispatchTime.now().uptimeNanoseconds
            try step()
            seconds.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
        }
        print("{\"tokens_per_second_median\": \(Double(sequenceLength) / median(seconds)), \"seconds\": \(seconds), \"peak_rss_mb\": \(peakResidentMegabytes()), \"trainable\": \(engine.parameters.map(\.value.count).reduce(0, +))}")
    } catch {
        fail("\(error)")
    }
    exit(0)
}
guard arguments.count >= 3, arguments[1] == "forward" else {
    fail("usage: refinery-bench forward MODEL_DIR [SEQ] [ITERS] | train MODEL_DIR lora|full [SEQ] [ITERS] | optimizer MODEL_DIR adamw|adamw-8bit [ITERS] | sgemm [N] [ITERS]")
}
let sequenceLength = arguments.count > 3 ? Int(arguments[3]) ?? 512 : 512
let iterations = arguments.count > 4 ? Int(arguments[4]) ?? 5 : 5
let model: LlamaModel
do { model = try LlamaModel(directory: URL(fileURLWithPath: arguments[2]), dtype: try benchDType()) } catch { fail("\(error)") }
var generator = SystemRandomNumberGenerator()
let tokens = (0..<sequenceLength).map { _ in Int.random(in: 0..<model.config.vocabSize, using: &generator) }
do {
    _ = try model.forward(tokens: tokens)  // warm-up
    var seconds: [Double] = []
    for _ in 0..<iterations {
        let start = DispatchTime.now().uptimeNanoseconds
        let logits = try model.forward(tokens: tokens)
        let elapsed = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        if logits.pointer[0].isNaN { fail("NaN logits") }
        seconds.append(elapsed)
    }
    let median = seconds.sorted()[seconds.count / 2]
    let line = "{\"tokens_per_second_median\": \(Double(sequenceLength) / median), \"seconds\": \(seconds), \"threads\": \(Parallel.threadCount), \"peak_rss_mb\": \(peakResidentMegabytes())}"
    print(line)
} catch {
    fail("\(error)")
}
