import Foundation
import RefineryCore
import RefineryText

/// Reads articles from the reference pipeline's JSON (`{"artifact_data": […]}`), JSONL (one
/// article per line, `content` or `text`), or a folder of `.txt`/`.md` files — streamed, one
/// article in memory at a time.
public enum ArticleSource {
    /// Calls `body` with each article of `path`.
    public static func read(path: String, body: (Article) throws -> Void) throws {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw DataError("no articles at \(path): give a .json, .jsonl file or a folder of .txt/.md files")
        }
        if isDirectory.boolValue {
            try readFolder(path, body)
        } else if path.hasSuffix(".jsonl") {
            try readJSONL(path, body)
        } else {
            try readArtifactJSON(path, body)
        }
    }

    static func article(from json: JSONValue, fallbackID: String, where location: String) throws -> Article {
        guard json.objectValue != nil else { throw DataError("\(location): an article must be a JSON object") }
        guard let content = json["content"]?.stringValue ?? json["text"]?.stringValue else {
            throw DataError("\(location): the article has no string \"content\" (or \"text\")")
        }
        let id = json["id"]?.stringValue ?? json["id"]?.intValue.map(String.init) ?? fallbackID
        return Article(id: id, content: content, platform: json["platform"]?.stringValue, authorID: json["author_id"]?.stringValue,
                       authorName: json["author_full_name"]?.stringValue, link: json["link"]?.stringValue)
    }

    static func readArtifactJSON(_ path: String, _ body: (Article) throws -> Void) throws {
        let stream = try ByteStream(path: path)
        var index = 0
        try ArtifactJSONReader(stream: stream).forEachElement { element, line, column in
            let article = try article(from: element.value, fallbackID: "\(index)", where: "\(path): article \(index) (line \(line), column \(column))")
            index += 1
            try body(article)
        }
    }

    static func readJSONL(_ path: String, _ body: (Article) throws -> Void) throws {
        do {
            try LineReader.forEachLine(path: path) { line, number in
                let json: JSONValue
                do { json = try JSONValue.parse(line) } catch {
                    throw DataError("\(path):\(number): not valid JSON: \(error)")
                }
                try body(try article(from: json, fallbackID: "line-\(number)", where: "\(path):\(number)"))
            }
        } catch let error as CoreError {
            throw DataError(error.message)
        }
    }

    static func readFolder(_ path: String, _ body: (Article) throws -> Void) throws {
        let root = URL(fileURLWithPath: path)
        guard let enumerator = FileManager.default.enumerator(atPath: path) else { throw DataError("cannot list \(path)") }
        var files: [String] = []
        while let relative = enumerator.nextObject() as? String {
            if relative.hasSuffix(".txt") || relative.hasSuffix(".md") { files.append(relative) }
        }
        for relative in files.sorted() {
            let data: Data
            do { data = try Data(contentsOf: root.appendingPathComponent(relative)) } catch {
                throw DataError("cannot read \(root.appendingPathComponent(relative).path): \(error.localizedDescription)")
            }
            guard let text = String(validating: Array(data), as: UTF8.self) else {
                let bad = firstInvalidUTF8Offset(Array(data)) ?? 0
                throw DataError("\(root.appendingPathComponent(relative).path): invalid UTF-8 at byte \(bad); convert the file to UTF-8")
            }
            try body(Article(id: relative, content: text, platform: nil, authorID: nil, authorName: nil, link: nil))
        }
    }

    /// Offset of the first byte that does not begin a valid UTF-8 sequence, or nil.
    static func firstInvalidUTF8Offset(_ bytes: [UInt8]) -> Int? {
        var i = 0
        while i < bytes.count {
            let b = bytes[i]
            let length: Int
            switch b {
            case 0x00...0x7F: length = 1
            case 0xC2...0xDF: length = 2
            case 0xE0...0xEF: length = 3
            case 0xF0...0xF4: length = 4
            default: return i
            }
            guard i + length <= bytes.count else { return i }
            for k in 1..<length where bytes[i + k] & 0xC0 != 0x80 { return i }
            if length > 1, String(validating: Array(bytes[i..<(i + length)]), as: UTF8.self) == nil { return i }
            i += length
        }
        return nil
    }
}
