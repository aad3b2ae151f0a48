/// A template that cannot be parsed or that failed while rendering (including the template's
/// own `raise_exception(...)`).
public struct TemplateError: Error, CustomStringConvertible, Sendable, Equatable {
    /// What went wrong, with the template line where it is known.
    public let message: String
    /// True when the template itself called `raise_exception`.
    public let raisedByTemplate: Bool

    init(_ message: String, line: Int? = nil, raisedByTemplate: Bool = false) {
        self.message = line.map { "line \($0): \(message)" } ?? message
        self.raisedByTemplate = raisedByTemplate
    }

    public var description: String { message }
}
