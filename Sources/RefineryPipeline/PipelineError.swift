/// A run that cannot start or go on; the message says what, where and how to fix it.
public struct PipelineError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Where a run's progress text goes, as written (lines end with "\n"; a status line that
/// rewrites itself starts with "\r"). The command line prints it to standard error.
public typealias ProgressReport = @Sendable (String) -> Void
