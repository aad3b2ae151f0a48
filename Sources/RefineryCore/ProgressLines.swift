import Foundation

/// Turns progress text into what a terminal, a log file or a pipe should hold. Progress is
/// written as the terminal shows it: a status line that rewrites itself starts (or ends) with
/// "\r", and a lone "\n" ends it. On a terminal the status line is redrawn in place (cleared
/// first, so a shorter one leaves nothing behind), and a message arriving while it shows is
/// printed above it and the status redrawn below; otherwise (`isTerminal` false)
/// every status becomes a plain line ending in "\n", at most one per `interval` seconds (the
/// last one before the status ends is always kept, so a log ends on the final state), and no line
/// is longer than `maximumWidth` characters (longer ones wrap at a space, continued with two spaces
/// of indent). Not thread-safe: `Output` holds one behind a lock.
public struct ProgressLines: Sendable {
    public let isTerminal: Bool
    public let interval: Double
    public let maximumWidth: Int
    /// When the last status line was written (seconds, the caller's clock).
    private var lastStatusTime: Double?
    /// A status dropped by the interval, written if the status ends before another comes.
    private var pendingStatus: String?
    /// The status line a terminal shows now (not ended by a newline yet).
    private var shownStatus: String?
    /// Clears the terminal's current line.
    static let clearLine = "\r\u{1B}[K"

    public init(isTerminal: Bool, interval: Double = 5, maximumWidth: Int = 300) {
        self.isTerminal = isTerminal
        self.interval = interval
        self.maximumWidth = max(maximumWidth, 20)
    }

    /// What to write for `text` arriving at time `now` (seconds); may be empty.
    public mutating func render(_ text: String, now: Double) -> String {
        if isTerminal { return renderOnTerminal(text) }
        let (status, body) = Self.parse(text)
        if body == "\n" || body.isEmpty {
            // The end of a status line: the state it ended on, if the interval hid it.
            defer { pendingStatus = nil }
            return pendingStatus.map { wrap($0) + "\n" } ?? ""
        }
        if status {
            let ends = body.hasSuffix("\n")
            let line = ends ? String(body.dropLast()) : body
            if ends || lastStatusTime.map({ now - $0 >= interval }) ?? true {
                lastStatusTime = now
                pendingStatus = nil
                return wrap(line) + "\n"
            }
            pendingStatus = line
            return ""
        }
        var output = ""
        if let pending = pendingStatus {
            output += wrap(pending) + "\n"
            pendingStatus = nil
        }
        let ends = body.hasSuffix("\n")
        let lines = (ends ? String(body.dropLast()) : body).split(separator: "\n", omittingEmptySubsequences: false)
        output += lines.map { wrap(String($0)) }.joined(separator: "\n") + (ends ? "\n" : "")
        return output
    }

    /// Whether `text` is a status line, and its text without carriage returns (a status rewritten
    /// inside one write keeps what follows the last one).
    static func parse(_ text: String) -> (status: Bool, body: String) {
        var status = text.hasPrefix("\r") || (text.hasSuffix("\r") && !text.hasSuffix("\n"))
        var body = text
        while body.hasPrefix("\r") { body.removeFirst() }
        while body.hasSuffix("\r") { body.removeLast() }
        if !status && body.contains("\r") {
            body = String(body[body.index(after: body.lastIndex(of: "\r") ?? body.startIndex)...])
            status = true
        }
        return (status, body)
    }

    private mutating func renderOnTerminal(_ text: String) -> String {
        let (status, body) = Self.parse(text)
        if body == "\n" || body.isEmpty {
            defer { shownStatus = nil }
            return shownStatus == nil ? body : "\n"
        }
        if status {
            if body.hasSuffix("\n") {
                shownStatus = nil
                return Self.clearLine + body
            }
            shownStatus = body
            return Self.clearLine + body
        }
        // A message: above the status line, which is drawn again below it.
        guard let shown = shownStatus else { return text }
        return Self.clearLine + body + (body.hasSuffix("\n") ? "" : "\n") + shown
    }

    /// `line` cut into pieces of at most `maximumWidth` characters, at the last space that allows.
    public func wrap(_ line: String) -> String {
        guard line.count > maximumWidth else { return line }
        var pieces: [String] = []
        var rest = Substring(line)
        var width = maximumWidth
        while rest.count > width {
            let limit = rest.index(rest.startIndex, offsetBy: width)
            let head = rest[..<limit]
            let cut = head.lastIndex(of: " ").flatMap { $0 > rest.startIndex ? $0 : nil } ?? limit
            pieces.append(String(rest[..<cut]))
            rest = rest[cut...].drop { $0 == " " }
            width = maximumWidth - 2
        }
        if !rest.isEmpty { pieces.append(String(rest)) }
        return pieces.enumerated().map { $0.offset == 0 ? $0.element : "  " + $0.element }.joined(separator: "\n")
    }
}
