import Foundation

/// Buffered bytes of a file, read forward, with the line and column of the current position.
final class ByteStream {
    private let handle: FileHandle
    let path: String
    private var buffer: [UInt8] = []
    private var index = 0
    private(set) var offset = 0
    private(set) var line = 1
    private(set) var column = 1
    private var finished = false

    init(path: String) throws {
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw DataError("cannot open \(path): no such file or not readable")
        }
        self.handle = handle
        self.path = path
    }

    deinit { try? handle.close() }

    private func refill() -> Bool {
        if finished { return false }
        let data = handle.readData(ofLength: 1 << 20)
        if data.isEmpty { finished = true; return false }
        buffer = Array(data)
        index = 0
        return true
    }

    /// The next byte without consuming it.
    func peek() -> UInt8? {
        if index >= buffer.count && !refill() { return nil }
        return buffer[index]
    }

    /// Consumes one byte.
    @discardableResult
    func next() -> UInt8? {
        guard let byte = peek() else { return nil }
        index += 1
        offset += 1
        if byte == 0x0A { line += 1; column = 1 } else { column += 1 }
        return byte
    }

    func skipWhitespace() {
        while let b = peek(), b == 0x20 || b == 0x0A || b == 0x0D || b == 0x09 { next() }
    }

    func error(_ reason: String) -> DataError {
        DataError("\(path): line \(line), column \(column): \(reason)")
    }
}

/// Reads `{"artifact_data": [ {…}, {…} ]}` element by element: only one article is in memory at a time.
struct ArtifactJSONReader {
    let stream: ByteStream

    /// Calls `body` with each element of the `artifact_data` array (other top-level keys are skipped).
    func forEachElement(_ body: (JSONValueBox, Int, Int) throws -> Void) throws {
        stream.skipWhitespace()
        guard stream.next() == UInt8(ascii: "{") else { throw stream.error("expected a JSON object with an \"artifact_data\" array") }
        var found = false
        stream.skipWhitespace()
        if stream.peek() == UInt8(ascii: "}") { stream.next(); throw stream.error("the object has no \"artifact_data\" array") }
        while true {
            stream.skipWhitespace()
            let key = try captureValue()
            guard case let .string(name)? = try? JSONValueBox.parse(key).value else { throw stream.error("expected a string key") }
            stream.skipWhitespace()
            guard stream.next() == UInt8(ascii: ":") else { throw stream.error("expected ':' after \"\(name)\"") }
            stream.skipWhitespace()
            if name == "artifact_data" {
                found = true
                guard stream.next() == UInt8(ascii: "[") else { throw stream.error("\"artifact_data\" must be an array") }
                stream.skipWhitespace()
                if stream.peek() == UInt8(ascii: "]") { stream.next() } else {
                    while true {
                        stream.skipWhitespace()
                        let line = stream.line, column = stream.column
                        let bytes = try captureValue()
                        let element: JSONValueBox
                        do { element = try JSONValueBox.parse(bytes) } catch let error as DataError {
                            throw DataError("\(stream.path): article starting at line \(line), column \(column): \(error.message)")
                        }
                        try body(element, line, column)
                        stream.skipWhitespace()
                        guard let separator = stream.next() else { throw stream.error("unexpected end of file inside \"artifact_data\"") }
                        if separator == UInt8(ascii: "]") { break }
                        guard separator == UInt8(ascii: ",") else { throw stream.error("expected ',' or ']' between articles") }
                    }
                }
            } else {
                _ = try captureValue()
            }
            stream.skipWhitespace()
            guard let separator = stream.next() else { throw stream.error("unexpected end of file: the top-level object is not closed") }
            if separator == UInt8(ascii: "}") { break }
            guard separator == UInt8(ascii: ",") else { throw stream.error("expected ',' or '}' in the top-level object") }
        }
        stream.skipWhitespace()
        if stream.peek() != nil { throw stream.error("unexpected text after the top-level object") }
        if !found { throw stream.error("the object has no \"artifact_data\" array") }
    }

    /// The bytes of one JSON value (string, number, literal, object or array), consumed.
    private func captureValue() throws -> [UInt8] {
        var bytes: [UInt8] = []
        var depth = 0
        var inString = false
        var escaped = false
        guard let first = stream.peek() else { throw stream.error("unexpected end of file, a value was expected") }
        if first == UInt8(ascii: "}") || first == UInt8(ascii: "]") || first == UInt8(ascii: ",") || first == UInt8(ascii: ":") {
            throw stream.error("a value was expected, found '\(Character(UnicodeScalar(first)))'")
        }
        while let b = stream.peek() {
            if inString {
                stream.next()
                bytes.append(b)
                if escaped { escaped = false } else if b == UInt8(ascii: "\\") { escaped = true } else if b == UInt8(ascii: "\"") {
                    inString = false
                    if depth == 0 { return bytes }
                }
                continue
            }
            switch b {
            case UInt8(ascii: "\""):
                inString = true
            case UInt8(ascii: "{"), UInt8(ascii: "["):
                depth += 1
            case UInt8(ascii: "}"), UInt8(ascii: "]"):
                if depth == 0 { return bytes }
                depth -= 1
                if depth == 0 { stream.next(); bytes.append(b); return bytes }
            case UInt8(ascii: ","), UInt8(ascii: ":"):
                if depth == 0 { return bytes }
            case 0x20, 0x0A, 0x0D, 0x09:
                if depth == 0 { return bytes }
            default:
                break
            }
            stream.next()
            bytes.append(b)
        }
        if inString || depth > 0 { throw stream.error("unexpected end of file inside a value (truncated file?)") }
        return bytes
    }
}
