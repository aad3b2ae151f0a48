import ArgumentParser
import Foundation
import Logging
import RefineryCore

/// Where the command line writes: results to standard output, progress and messages to standard
/// error. On a terminal, progress lines rewrite themselves; redirected to a file or pipe, each
/// becomes a plain line, at most one every few seconds, and no line is longer than 300
/// characters (`ProgressLines`). With `--log-format json` every message on standard error is one
/// JSON object per line, through swift-log (`JSONLineLogHandler`).
enum Output {
    /// The progress stream's state, behind a lock (reports arrive from several threads).
    private final class Stream: @unchecked Sendable {
        private let lock = NSLock()
        private var lines: ProgressLines
        private let handle: FileHandle
        private let descriptor: Int32
        private var logger: Logger?

        init(handle: FileHandle, descriptor: Int32) {
            self.handle = handle
            self.descriptor = descriptor
            lines = ProgressLines(isTerminal: isatty(descriptor) == 1)
        }

        func use(_ format: LogFormat) {
            lock.lock()
            defer { lock.unlock() }
            guard format == .json else { logger = nil; return }
            let handle = self.handle
            logger = Logger(label: "refinery") { label in JSONLineLogHandler(label: label) { handle.write(Data($0.utf8)) } }
            // JSON lines are for machines: never the rewriting terminal form.
            lines = ProgressLines(isTerminal: false, maximumWidth: .max)
        }

        var isJSON: Bool {
            lock.lock()
            defer { lock.unlock() }
            return logger != nil
        }

        func write(_ event: RunEvent) {
            lock.lock()
            guard let logger else {
                lock.unlock()
                write(event.line + "\n")
                return
            }
            defer { lock.unlock() }
            // A status line in progress ends first, as with any message.
            let pending = lines.render("\n", now: ProcessInfo.processInfo.systemUptime)
            if !pending.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty { log(pending, to: logger) }
            logger.log(level: event.level, "\(event.message)", metadata: event.metadata, source: event.source)
        }

        private func log(_ rendered: String, to logger: Logger) {
            for line in rendered.split(separator: "\n") where !line.trimmingCharacters(in: .whitespaces).isEmpty {
                let parts = LogLineParts(String(line))
                logger.log(level: parts.level, "\(parts.message)", source: parts.source)
            }
        }

        func write(_ text: String) {
            lock.lock()
            defer { lock.unlock() }
            let rendered = lines.render(text, now: ProcessInfo.processInfo.systemUptime)
            guard !rendered.isEmpty else { return }
            guard let logger else {
                handle.write(Data(rendered.utf8))
                return
            }
            log(rendered, to: logger)
        }
    }

    private static let standardError = Stream(handle: .standardError, descriptor: STDERR_FILENO)
    private static let standardOutput = Stream(handle: .standardOutput, descriptor: STDOUT_FILENO)

    /// Writes messages on standard error in `format` from now on.
    static func use(_ format: LogFormat) { standardError.use(format) }

    /// A line of results on standard output, as given (data: a JSON document, a table row).
    static func line(_ text: String) {
        FileHandle.standardOutput.write(Data((text + "\n").utf8))
    }

    /// A sentence for the reader on standard output ("wrote …"): wrapped at 300 characters when
    /// redirected.
    static func message(_ text: String) {
        standardOutput.write(text + "\n")
    }

    /// Results on standard output, as given (a JSON document, a dataset line).
    static func write(_ text: String) {
        FileHandle.standardOutput.write(Data(text.utf8))
    }

    /// Progress or a message on standard error ("\r" starts a status line that rewrites itself).
    static func progress(_ text: String) {
        standardError.write(text)
    }

    /// A run's event on standard error: its `[source] message` line, or with `--log-format json`
    /// one object carrying the event's name and fields.
    static func event(_ event: RunEvent) {
        standardError.write(event)
    }

    /// Whether messages go out as JSON lines (`--log-format json`).
    static var isJSON: Bool { standardError.isJSON }
}

/// `--log-format text|json` of the commands that report a run's events.
struct LogFormatOption: ParsableArguments {
    @Option(help: "text (default) or json: one JSON object per line on standard error (time, level, source, message).")
    var logFormat: String = "text"

    /// Applies the choice; refuses an unknown one.
    func apply() throws {
        guard let format = LogFormat(rawValue: logFormat) else {
            throw CommandError("--log-format \(logFormat): use text or json")
        }
        Output.use(format)
    }
}
