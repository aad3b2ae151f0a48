import CRefineryKernels
import Foundation

/// Backward passes of the forward kernels (explicit, no autograd), matching PyTorch's gradients.
public enum BackwardKernels {
    /// Inverse RMS of each row: `1 / sqrt(mean(x²) + eps)`.
    public static func inverseRMS(_ x: UnsafePointer<Float>, rows: Int, dim: Int, eps: Float, into out: UnsafeMutablePointer<Float>) {
        let xs = SendablePointer(UnsafeMutablePointer(mutating: x)), os = SendablePointer(out)
        Parallel.forEach(rows, costPerItem: dim * 2) { range in
            for row in range {
                let input = xs.pointer + row * dim
                let sum = rk_dot(input, input, dim)
                os.pointer[row] = 1 / (sum / Float(dim) + eps).squareRoot()
            }
        }
    }

    /// RMSNorm backward: `dx = r·(w⊙dy) − x·r³/dim·Σ(w⊙dy⊙x)` (written, not accumulated), and
    /// `dWeight += Σ_rows dy⊙x·r` when `dWeight` is given.
    public static func rmsNorm(
        x: UnsafePointer<Float>, weight: UnsafePointer<Float>, inverseRMS: UnsafePointer<Float>,
        dy: UnsafePointer<Float>, rows: Int, dim: Int,
        dx: UnsafeMutablePointer<Float>, dWeight: UnsafeMutablePointer<Float>?
    ) {
        let xs = SendablePointer(UnsafeMutablePointer(mutating: x)), ws = SendablePointer(UnsafeMutablePointer(mutating: weight))
        let rs = SendablePointer(UnsafeMutablePointer(mutating: inverseRMS)), dys = SendablePointer(UnsafeMutablePointer(mutating: dy))
        let dxs = SendablePointer(dx)
        Parallel.forEach(rows, costPerItem: dim * 4) { range in
            for row in range {
                let xr = xs.pointer + row * dim, dyr = dys.pointer + row * dim, dxr = dxs.pointer + row * dim
                let r = rs.pointer[row]
                let dot = rk_dot3(ws.pointer, dyr, xr, dim)
                let coefficient = r * r * r * dot / Float(dim)
                rk_rms_backward(xr, ws.pointer, dyr, dxr, dim, r, coefficient)
            }
        }
        // The weight gradient sums over rows: serial, in row order, so it is deterministic.
        if let dWeight {
            for row in 0..<rows {
                let xr = x + row * dim, dyr = dy + row * dim
                let r = inverseRMS[row]
                for i in 0..<dim { dWeight[i] += dyr[i] * xr[i] * r }
            }
        }
    }

    /// Rotary backward in place: rotates gradients by −θ (`rows` rows, table row per `positions`).
    public static func applyRotaryBackward(
        _ g: UnsafeMutablePointer<Float>, rows: Int, heads: Int, headDim: Int, rowStride: Int,
        cos: UnsafePointer<Float>, sin: UnsafePointer<Float>
    ) {
        let half = headDim / 2
        let gs = SendablePointer(g)
        let cs = SendablePointer(UnsafeMutablePointer(mutating: cos)), ss = SendablePointer(UnsafeMutablePointer(mutating: sin))
        Parallel.forEach(rows, costPerItem: heads * headDim * 3) { range in
            for row in range {
                let c = cs.pointer + row * half, s = ss.pointer + row * half
                for head in 0..<heads { rk_rotary_backward(gs.pointer + row * rowStride + head * headDim, c, s, half) }
            }
        }
    }

    /// Cross-entropy forward and backward for `rows` rows of logits in place (each row becomes
    /// `(softmax − onehot)·scale`); returns Σ of the rows' cross-entropies (summed in row order).
    public static func crossEntropyRows(_ logits: UnsafeMutablePointer<Float>, rows: Int, vocab: Int, targets: [Int], scale: Float) -> Double {
        let losses = UnsafeMutablePointer<Double>.allocate(capacity: rows)
        defer { losses.deallocate() }
        let ls = SendablePointer(losses), xs = SendablePointer(logits)
        targets.withUnsafeBufferPointer { buffer in
            guard rows > 0, let base = buffer.baseAddress else { return }
            let ts = SendablePointer(UnsafeMutablePointer(mutating: base))
            Parallel.forEach(rows, costPerItem: vocab * 8) { range in
                for row in range {
                    ls.pointer[row] = crossEntropy(xs.pointer + row * vocab, vocab: vocab, target: ts.pointer[row], scale: scale)
                }
            }
        }
        var total = 0.0
        for row in 0..<rows { total += losses[row] }
        return total
    }

    /// SiLU-gate backward: with `act = silu(gate)·up`, writes `dGate` and `dUp` from `dAct`.
    public static func siluGate(
        gate: UnsafePointer<Float>, up: UnsafePointer<Float>, dAct: UnsafePointer<Float>, count: Int,
        dGate: UnsafeMutablePointer<Float>, dUp: UnsafeMutablePointer<Float>
    ) {
        let gs = SendablePointer(UnsafeMutablePointer(mutating: gate)), us = SendablePointer(UnsafeMutablePointer(mutating: up))
        let ds = SendablePointer(UnsafeMutablePointer(mutating: dAct))
        let dg = SendablePointer(dGate), du = SendablePointer(dUp)
        Parallel.forEach((count + 4095) / 4096, costPerItem: 4096 * 8) { blocks in
            let start = blocks.lowerBound * 4096, end = Swift.min(count, blocks.upperBound * 4096)
            rk_silu_gate_backward(gs.pointer + start, us.pointer + start, ds.pointer + start, dg.pointer + start, du.pointer + start, end - start)
        }
    }

    /// Cross-entropy backward for one row, in place: `logits ← (softmax(logits) − onehot(target))·scale`.
    /// Returns the row's cross-entropy.
    public static func crossEntropy(_ logits: UnsafeMutablePointer<Float>, vocab: Int, target: Int, scale: Float) -> Double {
        rk_cross_entropy(logits, vocab, target, scale)
    }

    /// Sum of the rows of `x` (`[rows, cols]`) added into `out[cols]` (bias gradients).
    public static func addColumnSums(_ x: UnsafePointer<Float>, rows: Int, cols: Int, into out: UnsafeMutablePointer<Float>) {
        for row in 0..<rows {
            let r = x + row * cols
            for i in 0..<cols { out[i] += r[i] }
        }
    }
}
