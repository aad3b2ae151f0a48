import Foundation
import Logging

/// How the command line writes its messages: as text lines (default) or as JSON lines
/// (`--log-format json`), one object per event with `time`, `level`, `source`, `message` and any
/// metadata.
public enum LogFormat: String, Sendable, CaseIterable {
    case text, json
}

/// A swift-log handler writing one JSON object per line through `write` (standard error in the
/// command line): `{"time": ISO 8601 with milliseconds, "level", "source", "message", metadata…}`.
public struct JSONLineLogHandler: LogHandler {
    public var logLevel: Logger.Level = .info
    public var metadata: Logger.Metadata = [:]
    private let label: String
    private let write: @Sendable (String) -> Void

    public init(label: String, write: @escaping @Sendable (String) -> Void) {
        self.label = label
        self.write = write
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var fields: [(String, JSONValue)] = [("time", .string(Self.timestamp(Date()))), ("level", .string(event.level.rawValue)),
                                             ("source", .string(event.source.isEmpty ? label : event.source)),
                                             ("message", .string(event.message.description))]
        for (key, value) in metadata.merging(event.metadata ?? [:], uniquingKeysWith: { $1 }).sorted(by: { $0.key < $1.key }) {
            fields.append((key, .string(value.description)))
        }
        write(JSONValue.object(fields).compactText + "\n")
    }

    static func timestamp(_ date: Date) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.string(from: date)
    }
}

/// A message line as the command line writes it — "[source] text", "warning: text", "Error: text" —
/// taken apart for a structured log.
public struct LogLineParts: Sendable, Equatable {
    public var level: Logger.Level
    public var source: String
    public var message: String

    public init(_ line: String) {
        var text = Substring(line)
        level = .info
        source = ""
        if text.hasPrefix("["), let close = text.firstIndex(of: "]") {
            source = String(text[text.index(after: text.startIndex)..<close])
            text = text[text.index(after: close)...].drop { $0 == " " }
        }
        let lower = text.lowercased()
        if lower.hasPrefix("warning:") {
            level = .warning
            text = text.dropFirst("warning:".count).drop { $0 == " " }
        } else if lower.hasPrefix("error:") {
            level = .error
            text = text.dropFirst("error:".count).drop { $0 == " " }
        }
        message = String(text)
    }
}

/// One thing in a run worth a log line (a worker joined or was lost, a lease expired, a request
/// failed and was retried, a checkpoint was written, a stage finished), with its facts as named
/// fields. As text it is the line `[source] message`; with `--log-format json` an object whose
/// `event` and fields a machine can filter on.
public struct RunEvent: Sendable {
    /// Who says it: "cluster", "worker", "train", a stage's name.
    public var source: String
    /// What happened, in snake case: "worker_joined", "lease_expired", "request_failed", …
    public var name: String
    public var level: Logger.Level
    /// The sentence for people.
    public var message: String
    /// The event's facts (worker id, task, error class, reason, …), in order.
    public var fields: [(String, String)]

    public init(source: String, name: String, level: Logger.Level = .info, message: String, fields: [(String, String)] = []) {
        self.source = source
        self.name = name
        self.level = level
        self.message = message
        self.fields = fields
    }

    /// The text form: `[source] message` (`warning: ` before a warning's message).
    public var line: String { "[\(source)] " + (level == .warning ? "warning: " : level >= .error ? "error: " : "") + message }

    /// The event's name and fields as swift-log metadata.
    public var metadata: Logger.Metadata {
        var metadata: Logger.Metadata = ["event": .string(name)]
        for (key, value) in fields { metadata[key] = .string(value) }
        return metadata
    }
}
