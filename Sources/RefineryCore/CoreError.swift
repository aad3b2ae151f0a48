/// An input error from the shared helpers (a file that cannot be read, a line that is not
/// UTF-8). The message says what is wrong and where.
public struct CoreError: Error, CustomStringConvertible, Sendable, Equatable {
    /// The full, user-facing message.
    public let message: String
    /// Creates an error with `message`.
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
