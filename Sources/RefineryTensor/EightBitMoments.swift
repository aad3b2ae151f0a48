import CRefineryKernels

/// AdamW's two moments of one parameter in 8 bits, as bitsandbytes' `AdamW8bit` keeps them:
/// blocks of 256 values (the last may be shorter), one byte per value indexing a dynamic map
/// (`DynamicMap.signed` for the first moment, `DynamicMap.unsigned` for the second) times the
/// block's absmax. 2 bytes per value plus 8 per 256 — a quarter of float32 moments.
public final class EightBitMoments: @unchecked Sendable {
    /// Values per block.
    public static let blockSize = 256

    /// Number of values.
    public let count: Int
    /// Number of blocks.
    public var blockCount: Int { (count + Self.blockSize - 1) / Self.blockSize }
    private let firstCodes: UnsafeMutablePointer<UInt8>
    private let secondCodes: UnsafeMutablePointer<UInt8>
    private let firstScales: UnsafeMutablePointer<Float>
    private let secondScales: UnsafeMutablePointer<Float>

    /// Zero moments for `count` values (code 0 times absmax 0 decodes to 0).
    public init(count: Int) {
        precondition(count > 0, "EightBitMoments: count \(count)")
        self.count = count
        let blocks = (count + Self.blockSize - 1) / Self.blockSize
        firstCodes = .allocate(capacity: count)
        secondCodes = .allocate(capacity: count)
        firstScales = .allocate(capacity: blocks)
        secondScales = .allocate(capacity: blocks)
        firstCodes.initialize(repeating: 0, count: count)
        secondCodes.initialize(repeating: 0, count: count)
        firstScales.initialize(repeating: 0, count: blocks)
        secondScales.initialize(repeating: 0, count: blocks)
    }

    /// Moments saved by `parts` (a checkpoint): checks every size and that the scales are finite
    /// and not negative.
    public convenience init(count: Int, firstCodes: [UInt8], firstScales: [Float], secondCodes: [UInt8], secondScales: [Float]) throws {
        guard count > 0 else { throw TensorError("8-bit moments need a positive count, found \(count)") }
        let blocks = (count + Self.blockSize - 1) / Self.blockSize
        guard firstCodes.count == count, secondCodes.count == count, firstScales.count == blocks, secondScales.count == blocks else {
            throw TensorError("8-bit moments for \(count) values need \(count) codes and \(blocks) scales each; found "
                              + "\(firstCodes.count)/\(secondCodes.count) codes and \(firstScales.count)/\(secondScales.count) scales")
        }
        guard (firstScales + secondScales).allSatisfy({ $0.isFinite && $0 >= 0 }) else {
            throw TensorError("8-bit moments hold a negative or non-finite block scale")
        }
        self.init(count: count)
        self.firstCodes.update(from: firstCodes, count: count)
        self.secondCodes.update(from: secondCodes, count: count)
        self.firstScales.update(from: firstScales, count: blocks)
        self.secondScales.update(from: secondScales, count: blocks)
    }

    deinit {
        firstCodes.deallocate()
        secondCodes.deallocate()
        firstScales.deallocate()
        secondScales.deallocate()
    }

    /// The stored parts (checkpoints): codes and per-block absmax of each moment.
    public var parts: (firstCodes: [UInt8], firstScales: [Float], secondCodes: [UInt8], secondScales: [Float]) {
        (Array(UnsafeBufferPointer(start: firstCodes, count: count)), Array(UnsafeBufferPointer(start: firstScales, count: blockCount)),
         Array(UnsafeBufferPointer(start: secondCodes, count: count)), Array(UnsafeBufferPointer(start: secondScales, count: blockCount)))
    }

    /// One AdamW update of values `range` (its bounds on block boundaries, or the end) of
    /// `parameter` with `gradient` (both indexed from the parameter's start), bitsandbytes'
    /// formula: decode, update in float32, code again (see `rk_adamw8bit_block`). Blocks are
    /// independent: calls for disjoint ranges may run at once.
    public func update(parameter: UnsafeMutablePointer<Float>, gradient: UnsafePointer<Float>, range: Range<Int>,
                       decay: Float, beta1: Float, beta2: Float, oneMinusBeta1: Float, oneMinusBeta2: Float, epsilon: Float,
                       negativeStepSize: Float, correction2Root: Float) {
        precondition(range.lowerBound % Self.blockSize == 0 && range.upperBound <= count, "EightBitMoments: range \(range)")
        withUnsafePointer(to: DynamicMap.signedCodeMap.map) { first in
            withUnsafePointer(to: DynamicMap.unsignedCodeMap.map) { second in
                var start = range.lowerBound
                while start < range.upperBound {
                    let length = min(Self.blockSize, count - start), block = start / Self.blockSize
                    precondition(start + length <= range.upperBound, "EightBitMoments: range \(range) ends inside a block")
                    rk_adamw8bit_block(parameter + start, gradient + start, firstCodes + start, firstScales + block,
                                       secondCodes + start, secondScales + block, length, length == Self.blockSize ? 1 : 0,
                                       first, second, decay, beta1, beta2, oneMinusBeta1, oneMinusBeta2, epsilon,
                                       negativeStepSize, correction2Root)
                    start += length
                }
            }
        }
    }
}
