import Foundation

/// Streams the non-blank lines of a JSONL file or standard input, with 1-based line numbers,
/// without loading the whole input.
public enum LineReader {
    /// Calls `body(line, lineNumber)` for each non-blank line of the file at `path`, or of standard
    /// input when `path` is nil. Invalid UTF-8 stops with an error naming the line.
    public static func forEachLine(path: String?, _ body: (String, Int) throws -> Void) throws {
        guard let path else {
            try forEachLine(of: FileHandle.standardInput, source: "<stdin>", body)
            return
        }
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw CoreError("cannot open \(path): no such file or not readable")
        }
        defer { try? handle.close() }
        try forEachLine(of: handle, source: path, body)
    }

    /// The same for an open handle; `source` names it in errors.
    public static func forEachLine(of handle: FileHandle, source: String, _ body: (String, Int) throws -> Void) throws {
        var pending = Data()
        var lineNumber = 0
        func emit(_ data: Data) throws {
            lineNumber += 1
            guard let line = String(data: data, encoding: .utf8) else {
                throw CoreError("\(source):\(lineNumber): the line is not valid UTF-8")
            }
            if line.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty { return }
            try body(line, lineNumber)
        }
        while true {
            let chunk = handle.readData(ofLength: 1 << 20)
            if chunk.isEmpty { break }
            pending.append(chunk)
            var start = pending.startIndex
            while let newline = pending[start...].firstIndex(of: 0x0A) {
                try emit(pending[start..<newline])
                start = newline + 1
            }
            pending = Data(pending[start...])
        }
        if !pending.isEmpty { try emit(pending) }
    }
}
