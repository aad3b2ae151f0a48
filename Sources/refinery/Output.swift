import Foundation
import RefineryCore

/// Where the command line writes: results to standard output, progress and messages to standard
/// error. On a terminal, progress lines rewrite themselves; redirected to a file or pipe, each
/// becomes a plain line, at most one every few seconds, and no line is longer than 300
/// characters (`ProgressLines`).
enum Output {
    /// The progress stream's state, behind a lock (reports arrive from several threads).
    private final class Stream: @unchecked Sendable {
        private let lock = NSLock()
        private var lines: ProgressLines
        private let handle: FileHandle

        init(handle: FileHandle, descriptor: Int32) {
            self.handle = handle
            lines = ProgressLines(isTerminal: isatty(descriptor) == 1)
        }

        func write(_ text: String) {
            lock.lock()
            defer { lock.unlock() }
            let rendered = lines.render(text, now: ProcessInfo.processInfo.systemUptime)
            if !rendered.isEmpty { handle.write(Data(rendered.utf8)) }
        }
    }

    private static let standardError = Stream(handle: .standardError, descriptor: STDERR_FILENO)
    private static let standardOutput = Stream(handle: .standardOutput, descriptor: STDOUT_FILENO)

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
}
