import Foundation
import RefineryTensor

/// The scratch buffers of one `BertEncoder` forward pass, kept between calls. A batch of 4,096
/// rows needs ~75 MB of them (MiniLM-L6); allocated afresh per batch, every page is faulted in and
/// cleared again, which took ~9% of a classifier run's time.
final class EncoderWorkspace: @unchecked Sendable {
    /// The most rows a forward pass may use with these buffers.
    let capacity: Int
    /// `[rows, hidden]`: the hidden states between layers (when the caller does not keep them).
    let states: FloatStorage
    /// `[rows, 3 × hidden]`: queries, keys and values of every head.
    let qkv: FloatStorage
    /// `[rows, hidden]` each: attention context, the residual sum, the attention block's output.
    let context: FloatStorage, sum: FloatStorage, attended: FloatStorage
    /// `[rows, intermediate]`: the MLP's hidden activations.
    let inner: FloatStorage
    /// The bfloat16 roundings of the products' operands (bfloat16 encoders only); `qkv` has 16
    /// extra rows for the attention's padded products.
    let halves: (x: BFloat16Storage, attended: BFloat16Storage, inner: BFloat16Storage, context: BFloat16Storage,
                 qkv: BFloat16Storage)?

    init(rows: Int, config: BertConfig, bfloat16: Bool) {
        let h = config.hiddenSize, inner = config.intermediateSize
        capacity = rows
        states = FloatStorage(uninitializedCount: rows * h)
        qkv = FloatStorage(uninitializedCount: rows * 3 * h)
        context = FloatStorage(uninitializedCount: rows * h)
        sum = FloatStorage(uninitializedCount: rows * h)
        attended = FloatStorage(uninitializedCount: rows * h)
        self.inner = FloatStorage(uninitializedCount: rows * inner)
        halves = bfloat16
            ? (BFloat16Storage(uninitializedCount: rows * h), BFloat16Storage(uninitializedCount: rows * h),
               BFloat16Storage(uninitializedCount: rows * inner), BFloat16Storage(uninitializedCount: rows * h),
               BFloat16Storage(uninitializedCount: (rows + 16) * 3 * h))
            : nil
    }
}

/// One spare `EncoderWorkspace` per encoder: a call takes it (or makes a bigger one) and gives it
/// back when done, so concurrent calls never share buffers.
final class EncoderWorkspaces: @unchecked Sendable {
    private let lock = NSLock()
    private var spare: EncoderWorkspace?

    /// A workspace for at least `rows` rows: the spare when it is big enough, else a new one
    /// (rounded up to a multiple of 1,024 rows, so slightly bigger batches reuse it).
    func take(rows: Int, config: BertConfig, bfloat16: Bool) -> EncoderWorkspace {
        lock.lock()
        let candidate = spare
        spare = nil
        lock.unlock()
        if let candidate, candidate.capacity >= rows { return candidate }
        return EncoderWorkspace(rows: (rows + 1023) / 1024 * 1024, config: config, bfloat16: bfloat16)
    }

    /// Keeps `workspace` as the spare unless a bigger one is already kept.
    func giveBack(_ workspace: EncoderWorkspace) {
        lock.lock()
        defer { lock.unlock() }
        if (spare?.capacity ?? 0) < workspace.capacity { spare = workspace }
    }
}
