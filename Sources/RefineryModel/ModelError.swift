/// Errors from loading checkpoints and running models. Messages say what is wrong, where,
/// and how to fix it.
public struct ModelError: Error, CustomStringConvertible, Sendable, Equatable {
    /// The full, user-facing message.
    public let message: String
    /// Creates an error with `message`.
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
