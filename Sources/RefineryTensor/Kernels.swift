import CRefineryKernels
import Foundation

/// Vectorisable kernels for the Llama-family forward pass. All operate in place or into caller
/// buffers, row-major, Float32, and match PyTorch's float32 results up to rounding.
public enum Kernels {
    /// RMSNorm as `LlamaRMSNorm`: `y = w ⊙ x / sqrt(mean(x²) + eps)` for each of `rows` rows of `dim`.
    public static func rmsNorm(
        _ x: UnsafePointer<Float>, weight: UnsafePointer<Float>, rows: Int, dim: Int, eps: Float,
        into y: UnsafeMutablePointer<Float>
    ) {
        let xs = SendablePointer(UnsafeMutablePointer(mutating: x))
        let ys = SendablePointer(y)
        let ws = SendablePointer(UnsafeMutablePointer(mutating: weight))
        Parallel.forEach(rows, costPerItem: dim * 3) { range in
            for row in range {
                let input = xs.pointer + row * dim
                let output = ys.pointer + row * dim
                let sum = rk_dot(input, input, dim)
                let scale = 1 / (sum / Float(dim) + eps).squareRoot()
                rk_rms_scale(input, ws.pointer, output, dim, scale)
            }
        }
    }

    /// Rotary embedding as Hugging Face's `rotate_half` form, in place.
    ///
    /// `x` holds `rows` rows of `heads × headDim` values; row `r` uses the table row `positions[r]`
    /// of `cos`/`sin` (each `[maxPosition, headDim / 2]`).
    public static func applyRotary(
        _ x: UnsafeMutablePointer<Float>, rows: Int, heads: Int, headDim: Int, rowStride: Int,
        positions: [Int], cos: UnsafePointer<Float>, sin: UnsafePointer<Float>
    ) {
        let half = headDim / 2
        let xs = SendablePointer(x)
        let cs = SendablePointer(UnsafeMutablePointer(mutating: cos))
        let ss = SendablePointer(UnsafeMutablePointer(mutating: sin))
        positions.withUnsafeBufferPointer { positionBuffer in
            guard rows > 0, let base = positionBuffer.baseAddress else { return }
            let ps = SendablePointer(UnsafeMutablePointer(mutating: base))
            Parallel.forEach(rows, costPerItem: heads * headDim * 3) { range in
                for row in range {
                    let c = cs.pointer + ps.pointer[row] * half
                    let s = ss.pointer + ps.pointer[row] * half
                    for head in 0..<heads { rk_rotary(xs.pointer + row * rowStride + head * headDim, c, s, half) }
                }
            }
        }
    }

    /// `gate[i] = silu(gate[i]) * up[i]` for `count` elements, in place in `gate`.
    public static func siluGate(_ gate: UnsafeMutablePointer<Float>, up: UnsafePointer<Float>, count: Int) {
        let gs = SendablePointer(gate)
        let us = SendablePointer(UnsafeMutablePointer(mutating: up))
        Parallel.forEach((count + 1023) / 1024, costPerItem: 4096) { blocks in
            let start = blocks.lowerBound * 1024
            let end = Swift.min(count, blocks.upperBound * 1024)
            rk_silu_gate(gs.pointer + start, us.pointer + start, end - start)
        }
    }

    /// Adds `bias[cols]` to each of `rows` rows.
    public static func addBias(_ x: UnsafeMutablePointer<Float>, bias: UnsafePointer<Float>, rows: Int, cols: Int) {
        for row in 0..<rows {
            let r = x + row * cols
            for i in 0..<cols { r[i] += bias[i] }
        }
    }

    /// `x += y` for `count` elements.
    public static func add(_ x: UnsafeMutablePointer<Float>, _ y: UnsafePointer<Float>, count: Int) {
        for i in 0..<count { x[i] += y[i] }
    }

    /// Softmax of `x[0..<count]` in place (max-subtracted).
    public static func softmax(_ x: UnsafeMutablePointer<Float>, count: Int) {
        rk_softmax(x, count)
    }

    /// Natural log of Σ exp(x) over `count` elements, stable.
    public static func logSumExp(_ x: UnsafePointer<Float>, count: Int) -> Double {
        rk_logsumexp(x, count)
    }

    /// Cross-entropy `logsumexp(logits) − logits[target]` of one row.
    public static func crossEntropy(_ logits: UnsafePointer<Float>, vocab: Int, target: Int) -> Double {
        logSumExp(logits, count: vocab) - Double(logits[target])
    }
}
