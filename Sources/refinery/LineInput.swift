import Foundation

/// Reads non-empty lines from a file or standard input, with their 1-based line numbers.
enum LineInput {
    static func forEachLine(path: String?, _ body: (String, Int) throws -> Void) throws {
        if let path {
            guard let handle = FileHandle(forReadingAtPath: path) else {
                throw CommandError("cannot open \(path): no such file or not readable")
            }
            defer { try? handle.close() }
            try read(handle: handle, source: path, body)
        } else {
            try read(handle: FileHandle.standardInput, source: "<stdin>", body)
        }
    }

    private static func read(handle: FileHandle, source: String, _ body: (String, Int) throws -> Void) throws {
        var pending = Data()
        var lineNumber = 0
        func emit(_ data: Data) throws {
            lineNumber += 1
            guard let line = String(data: data, encoding: .utf8) else {
                throw CommandError("\(source):\(lineNumber): the line is not valid UTF-8")
            }
            if line.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty { return }
            try body(line, lineNumber)
        }
        while true {
            let chunk = handle.readData(ofLength: 1 << 16)
            if chunk.isEmpty { break }
            pending.append(chunk)
            while let newline = pending.firstIndex(of: 0x0A) {
                try emit(pending[pending.startIndex..<newline])
                pending = Data(pending[(newline + 1)...])
            }
        }
        if !pending.isEmpty { try emit(pending) }
    }
}

/// Writes to standard output / error without buffering surprises.
enum Output {
    static func line(_ text: String) {
        FileHandle.standardOutput.write(Data((text + "\n").utf8))
    }

    static func write(_ text: String) {
        FileHandle.standardOutput.write(Data(text.utf8))
    }

    static func progress(_ text: String) {
        FileHandle.standardError.write(Data(text.utf8))
    }
}
