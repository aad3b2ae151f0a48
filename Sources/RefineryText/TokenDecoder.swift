import Foundation
import RefineryCore

/// The `decoder` section of `tokenizer.json`: turns token strings back into text.
indirect enum TokenDecoder: Sendable {
    case sequence([TokenDecoder])
    case byteLevel
    case metaspace(replacement: Unicode.Scalar, prependScheme: PreTokenizer.PrependScheme)
    case replace(pattern: String, content: String)
    case byteFallback
    case fuse
    case strip(content: Character, start: Int, stop: Int)
    /// WordPiece: pieces after the first lose their prefix or gain a space; `cleanup` undoes
    /// BERT's spacing around punctuation and English contractions.
    case wordPiece(prefix: String, cleanup: Bool)

    static func parse(_ json: JSONValue?) throws -> TokenDecoder? {
        guard let json, !json.isNull else { return nil }
        guard let type = json["type"]?.stringValue else { throw TextError("tokenizer.json: decoder without a \"type\"") }
        switch type {
        case "Sequence": return .sequence(try (json["decoders"]?.arrayValue ?? []).compactMap { try parse($0) })
        case "ByteLevel": return .byteLevel
        case "Metaspace":
            let replacement = json["replacement"]?.stringValue?.unicodeScalars.first ?? "\u{2581}"
            var scheme = PreTokenizer.PrependScheme(rawValue: json["prepend_scheme"]?.stringValue ?? "always") ?? .always
            if json["prepend_scheme"] == nil, let add = json["add_prefix_space"]?.boolValue, !add { scheme = .never }
            return .metaspace(replacement: replacement, prependScheme: scheme)
        case "Replace":
            guard let pattern = json["pattern"]?["String"]?.stringValue else {
                throw TextError("tokenizer.json: Replace decoder supports only a String pattern")
            }
            return .replace(pattern: pattern, content: json["content"]?.stringValue ?? "")
        case "ByteFallback": return .byteFallback
        case "Fuse": return .fuse
        case "Strip":
            return .strip(content: json["content"]?.stringValue?.first ?? " ",
                          start: json["start"]?.intValue ?? 0, stop: json["stop"]?.intValue ?? 0)
        case "WordPiece":
            return .wordPiece(prefix: json["prefix"]?.stringValue ?? "##", cleanup: json["cleanup"]?.boolValue ?? true)
        default:
            throw TextError("tokenizer.json: unsupported decoder type \"\(type)\" (supported: Sequence, ByteLevel, Metaspace, Replace, ByteFallback, Fuse, Strip, WordPiece)")
        }
    }

    func decode(_ tokens: [String]) -> [String] {
        switch self {
        case let .sequence(items):
            var current = tokens
            for item in items { current = item.decode(current) }
            return current
        case .byteLevel:
            var bytes: [UInt8] = []
            for token in tokens {
                var mapped: [UInt8] = []
                var ok = true
                for scalar in token.unicodeScalars {
                    guard let byte = ByteLevelMap.scalarToByte[scalar] else { ok = false; break }
                    mapped.append(byte)
                }
                bytes.append(contentsOf: ok ? mapped : Array(token.utf8))
            }
            return [String(decoding: bytes, as: UTF8.self)]
        case let .metaspace(replacement, scheme):
            return tokens.enumerated().map { index, token in
                var text = String(String.UnicodeScalarView(token.unicodeScalars.map { $0 == replacement ? " " : $0 }))
                if index == 0 && scheme != .never && text.hasPrefix(" ") { text.removeFirst() }
                return text
            }
        case let .replace(pattern, content):
            return tokens.map { $0.replacingAll(pattern, with: content) }
        case .byteFallback:
            var result: [String] = []
            var pending: [UInt8] = []
            func flush() {
                if pending.isEmpty { return }
                if let text = String(validating: pending, as: UTF8.self) {
                    result.append(text)
                } else {
                    result.append(contentsOf: Array(repeating: "\u{FFFD}", count: pending.count))
                }
                pending = []
            }
            for token in tokens {
                if let byte = Self.byteToken(token) { pending.append(byte) } else { flush(); result.append(token) }
            }
            flush()
            return result
        case .fuse:
            return [tokens.joined()]
        case let .strip(content, start, stop):
            return tokens.map { token in
                var chars = Array(token)
                var s = 0
                while s < start && s < chars.count && chars[s] == content { s += 1 }
                var e = chars.count
                var removed = 0
                while removed < stop && e > s && chars[e - 1] == content { e -= 1; removed += 1 }
                chars = Array(chars[s..<e])
                return String(chars)
            }
        case let .wordPiece(prefix, cleanup):
            return tokens.enumerated().map { index, token in
                var text = token
                if index > 0 {
                    if !prefix.isEmpty && text.hasPrefix(prefix) { text.removeFirst(prefix.count) } else { text = " " + text }
                }
                return cleanup ? Self.cleanUpSpacing(text) : text
            }
        }
    }

    /// The bytes `token` adds to a decoded text in the middle of a sequence (no start-of-text
    /// stripping, no clean-up): what constrained decoding checks a token against.
    func bytes(ofToken token: String) -> [UInt8] {
        var text = token
        for item in flattened {
            switch item {
            case .byteLevel:
                var bytes: [UInt8] = []
                for scalar in text.unicodeScalars {
                    guard let byte = ByteLevelMap.scalarToByte[scalar] else { return Array(text.utf8) }
                    bytes.append(byte)
                }
                return bytes
            case .byteFallback:
                if let byte = Self.byteToken(text) { return [byte] }
            case let .metaspace(replacement, _):
                text = String(String.UnicodeScalarView(text.unicodeScalars.map { $0 == replacement ? " " : $0 }))
            case let .replace(pattern, content):
                text = text.replacingAll(pattern, with: content)
            case let .wordPiece(prefix, _):
                text = !prefix.isEmpty && text.hasPrefix(prefix) ? String(text.dropFirst(prefix.count)) : " " + text
            case .fuse, .strip, .sequence:
                continue
            }
        }
        return Array(text.utf8)
    }

    /// The decoder's steps in order, sequences opened.
    private var flattened: [TokenDecoder] {
        if case let .sequence(items) = self { return items.flatMap(\.flattened) }
        return [self]
    }

    /// BERT's decode clean-up: no space before `. ? ! ,` and inside English contractions.
    static func cleanUpSpacing(_ text: String) -> String {
        var result = text
        for (pattern, replacement) in [(" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
                                       (" 'm", "'m"), (" do not", " don't"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")] {
            result = result.replacingAll(pattern, with: replacement)
        }
        return result
    }

    static func byteToken(_ token: String) -> UInt8? { ByteFallbackToken.byte(of: token) }
}

/// SentencePiece byte-fallback pieces: `<0xAB>` stands for the byte 0xAB.
public enum ByteFallbackToken {
    /// The byte `token` stands for, or nil when it is not a byte piece.
    public static func byte(of token: String) -> UInt8? {
        let utf8 = Array(token.utf8)
        guard utf8.count == 6, utf8[0] == UInt8(ascii: "<"), utf8[1] == UInt8(ascii: "0"), utf8[2] == UInt8(ascii: "x"),
              utf8[5] == UInt8(ascii: ">") else { return nil }
        return UInt8(String(decoding: utf8[3..<5], as: UTF8.self), radix: 16)
    }
}
