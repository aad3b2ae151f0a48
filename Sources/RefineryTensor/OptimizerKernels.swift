import CRefineryKernels

/// Elementwise kernels of the optimizer and clipping passes, and the allocator setting of a
/// training process. Callers in other modules reach the C kernels only through these.
public enum OptimizerKernels {
    /// One AdamW update of `count` elements in place (`torch.optim.AdamW`'s formula): `decay`
    /// is `1 − lr·weight_decay` (1 for no decay), `oneMinusBeta1/2` are `1 − β` rounded from
    /// double, `stepSize` and `correction2Root` carry the bias corrections of this step.
    @inline(__always)
    public static func adamW(
        parameter: UnsafeMutablePointer<Float>, gradient: UnsafePointer<Float>, firstMoment: UnsafeMutablePointer<Float>,
        secondMoment: UnsafeMutablePointer<Float>, count: Int, decay: Float, beta1: Float, beta2: Float,
        oneMinusBeta1: Float, oneMinusBeta2: Float, epsilon: Float, stepSize: Float, correction2Root: Float
    ) {
        rk_adamw(parameter, gradient, firstMoment, secondMoment, count, decay, beta1, beta2, oneMinusBeta1, oneMinusBeta2, epsilon,
                 stepSize, correction2Root)
    }

    /// Σ x² of `count` elements, accumulated in double in a fixed order.
    @inline(__always)
    public static func sumOfSquares(_ x: UnsafePointer<Float>, count: Int) -> Double {
        rk_sum_squares(x, count)
    }

    /// x ← factor · x for `count` elements.
    @inline(__always)
    public static func scale(_ x: UnsafeMutablePointer<Float>, count: Int, by factor: Float) {
        rk_scale(x, count, factor)
    }

    /// Makes this process keep the memory it frees (glibc's mmap and trim thresholds raised), so
    /// that the same activation sizes allocated every step do not fault fresh pages in. Returns
    /// whether the setting took effect.
    public static func retainFreedMemory() -> Bool { rk_retain_freed_memory() == 1 }
}
