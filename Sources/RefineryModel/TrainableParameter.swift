import RefineryTensor

/// A tensor being trained, its gradient, and whether weight decay applies (DESIGN §3.6: all but
/// biases and normalization weights).
public struct TrainableParameter: Sendable {
    /// Hugging Face / PEFT name.
    public let name: String
    /// The values, updated in place by the optimizer.
    public let value: Tensor
    /// The accumulated gradient (same shape).
    public let gradient: Tensor
    public let decays: Bool

    init(name: String, value: Tensor) {
        self.name = name
        self.value = value
        self.gradient = Tensor(zeros: value.shape)
        self.decays = !(name.hasSuffix(".bias") || name.contains("norm"))
    }
}

/// One sequence to train on: ids, the label mask, and for packed rows the rotary positions and
/// the first key each query may attend to.
public struct TrainingSequence: Sendable, Equatable {
    public var ids: [Int]
    /// `trained[t]`: token t is a label, predicted from position t − 1.
    public var trained: [Bool]
    public var positions: [Int]?
    public var keyStart: [Int]?

    public init(ids: [Int], trained: [Bool], positions: [Int]? = nil, keyStart: [Int]? = nil) {
        self.ids = ids
        self.trained = trained
        self.positions = positions
        self.keyStart = keyStart
    }

    /// Tokens that carry loss.
    public var labelCount: Int { (1..<max(ids.count, 1)).filter { trained[$0] }.count }
}
