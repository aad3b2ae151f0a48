import Foundation
import RefineryModel
import RefineryTensor

/// `refinery-bench shapes`: every matrix product shape of a training step on a model's
/// architecture (from `config.json` alone), each timed in float32 and bfloat16 through
/// Refinery's product interface, against the peaks measured in the same run — so the distance
/// to this machine's limit is visible per shape and for the step's products as a whole.
enum ProductShapeReport {
    /// One product shape of a step: `C[m,n] = op(A)·op(B)` over depth `k`, `count` times per step.
    struct Shape {
        let name: String
        let transA: Bool, transB: Bool
        let m: Int, n: Int, k: Int
        let count: Int
        /// Only full fine-tuning computes it (weight gradients of frozen matrices are skipped by LoRA).
        let fullOnly: Bool
        var layout: String { (transA ? "T" : "N") + (transB ? "T" : "N") }
        var flops: Double { 2 * Double(m) * Double(n) * Double(k) }
    }

    /// The products of one forward and backward pass over `sequence` tokens.
    static func shapes(_ c: ModelConfig, sequence s: Int) -> [Shape] {
        let projections: [(String, out: Int, in: Int, count: Int)] = [
            ("q_proj", c.qDim, c.hiddenSize, c.layerCount), ("k_proj+v_proj", c.kvDim, c.hiddenSize, 2 * c.layerCount),
            ("o_proj", c.hiddenSize, c.qDim, c.layerCount), ("gate_proj+up_proj", c.intermediateSize, c.hiddenSize, 2 * c.layerCount),
            ("down_proj", c.hiddenSize, c.intermediateSize, c.layerCount), ("lm_head", c.vocabSize, c.hiddenSize, 1),
        ]
        var result: [Shape] = []
        for p in projections {
            result.append(Shape(name: p.0 + " forward", transA: false, transB: true, m: s, n: p.out, k: p.in, count: p.count, fullOnly: false))
            result.append(Shape(name: p.0 + " input grad", transA: false, transB: false, m: s, n: p.in, k: p.out, count: p.count, fullOnly: false))
            result.append(Shape(name: p.0 + " weight grad", transA: true, transB: false, m: p.out, n: p.in, k: s, count: p.count, fullOnly: true))
        }
        return result
    }

    /// Operands for an `m×n×k` product in both precisions.
    struct Operands {
        let a: Tensor, b: Tensor, c: Tensor
        let a16: BFloat16Storage, b16: BFloat16Storage

        init(m: Int, n: Int, k: Int) {
            a = Tensor(shape: [m * k], values: (0..<(m * k)).map { Float($0 % 7) * 0.1 - 0.3 })
            b = Tensor(shape: [k * n], values: (0..<(k * n)).map { Float($0 % 5) * 0.1 - 0.2 })
            c = Tensor(zeros: [m, n])
            a16 = BFloat16Storage(rounding: a.pointer, count: a.count)
            b16 = BFloat16Storage(rounding: b.pointer, count: b.count)
        }
    }

    /// GFLOP/s of `shape` in float32 and in bfloat16 (median of `iterations` after a warm-up).
    static func measure(_ shape: Shape, iterations: Int) -> (float32: Double, bfloat16: Double) {
        let (m, n, k) = (shape.m, shape.n, shape.k)
        let operands = Operands(m: m, n: n, k: k)
        let lda = shape.transA ? m : k, ldb = shape.transB ? k : n
        let float32 = gflops(flops: shape.flops, iterations: iterations) {
            BLAS.gemm(transA: shape.transA, transB: shape.transB, m: m, n: n, k: k, a: operands.a.pointer, lda: lda,
                      b: operands.b.pointer, ldb: ldb, c: operands.c.pointer, ldc: n)
        }.gflops
        let bfloat16 = gflops(flops: shape.flops, iterations: iterations) {
            BLAS.gemmBF16(transA: shape.transA, transB: shape.transB, m: m, n: n, k: k, a: operands.a16.pointer, lda: lda,
                          b: operands.b16.pointer, ldb: ldb, c: operands.c.pointer, ldc: n)
        }.gflops
        return (float32, bfloat16)
    }

    static func run(directory: String, sequenceLength: Int, iterations: Int) throws {
        let config = try ModelConfig.load(directory: URL(fileURLWithPath: directory))
        let square = Shape(name: "2048³", transA: false, transB: true, m: 2048, n: 2048, k: 2048, count: 1, fullOnly: false)
        let squareRate = measure(square, iterations: iterations)
        let measured = shapes(config, sequence: sequenceLength).map { ($0, measure($0, iterations: iterations)) }
        // The peaks: the best rate any product reached in this run (a large square one or a step's own).
        let peak = (float32: measured.map(\.1.float32).reduce(squareRate.float32, max),
                    bfloat16: measured.map(\.1.bfloat16).reduce(squareRate.bfloat16, max))
        let backend = ProductBackend.current
        print("products on \(backend.rawValue) (\(backend.libraryVersion)), \(BLAS.threadCount) threads, sequence \(sequenceLength)")
        print("measured peaks (best of a 2048³ NT product and every shape below): float32 \(format(peak.float32)) GFLOP/s, "
              + "bfloat16 \(format(peak.bfloat16)) GFLOP/s (2048³ alone: \(format(squareRate.float32)) and \(format(squareRate.bfloat16)))")
        if backend != .onednn {
            print("note: these are \(backend.rawValue)'s peaks; this machine's limit is oneDNN's (run with REFINERY_BLAS=onednn)")
        }
        print(pad("shape", 32) + pad("layout", 7) + pad("M×N×K", 20) + pad("×step", 6)
              + pad("fp32 GFLOP/s", 13) + pad("% peak", 8) + pad("bf16 GFLOP/s", 13) + "% peak")
        var seconds = (lora: (float32: 0.0, bfloat16: 0.0), full: (float32: 0.0, bfloat16: 0.0))
        var flops = (lora: 0.0, full: 0.0)
        var rows: [String] = []
        for (shape, result) in measured {
            let total = shape.flops * Double(shape.count)
            flops.full += total
            seconds.full.float32 += total / (result.float32 * 1e9)
            seconds.full.bfloat16 += total / (result.bfloat16 * 1e9)
            if !shape.fullOnly {
                flops.lora += total
                seconds.lora.float32 += total / (result.float32 * 1e9)
                seconds.lora.bfloat16 += total / (result.bfloat16 * 1e9)
            }
            print(pad(shape.name + (shape.fullOnly ? " *" : ""), 32) + pad(shape.layout, 7) + pad("\(shape.m)×\(shape.n)×\(shape.k)", 20)
                  + pad("\(shape.count)", 6) + pad(format(result.float32), 13) + pad(percent(result.float32, peak.float32), 8)
                  + pad(format(result.bfloat16), 13) + percent(result.bfloat16, peak.bfloat16))
            rows.append("{\"shape\": \"\(shape.name)\", \"m\": \(shape.m), \"n\": \(shape.n), \"k\": \(shape.k), \"layout\": \"\(shape.layout)\", \"float32_gflops\": \(result.float32), \"bfloat16_gflops\": \(result.bfloat16)}")
        }
        print("* full fine-tuning only (LoRA computes no gradient of frozen weights)")
        for (label, f, s) in [("LoRA step, frozen-weight products", flops.lora, seconds.lora), ("full fine-tuning step, all weight products", flops.full, seconds.full)] {
            let f32 = f / s.float32 / 1e9, b16 = f / s.bfloat16 / 1e9
            print("\(label): \(format(f / 1e9)) GFLOP; float32 \(format(s.float32 * 1e3)) ms at \(format(f32)) GFLOP/s (\(percent(f32, peak.float32)) of peak), "
                  + "bfloat16 \(format(s.bfloat16 * 1e3)) ms at \(format(b16)) GFLOP/s (\(percent(b16, peak.bfloat16)) of peak)")
        }
        print("{\"backend\": \"\(backend.rawValue)\", \"peak_float32_gflops\": \(peak.float32), \"peak_bfloat16_gflops\": \(peak.bfloat16), "
              + "\"square_float32_gflops\": \(squareRate.float32), \"square_bfloat16_gflops\": \(squareRate.bfloat16), \"shapes\": [\(rows.joined(separator: ", "))]}")
    }

    static func format(_ value: Double) -> String { String(format: "%.1f", value) }
    static func percent(_ value: Double, _ peak: Double) -> String { String(format: "%.0f%%", 100 * value / peak) }
    static func pad(_ text: String, _ width: Int) -> String { text.count >= width ? text + " " : text + String(repeating: " ", count: width - text.count) }
}
