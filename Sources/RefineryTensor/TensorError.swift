/// Tensor data that cannot be used as given (sizes that do not fit a shape, values out of range).
public struct TensorError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
