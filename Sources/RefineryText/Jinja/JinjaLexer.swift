/// Splits a template into text, output and statement pieces, applying whitespace control
/// (`{%-`, `-%}`) and the `trim_blocks` / `lstrip_blocks` settings transformers uses.
struct JinjaLexer {
    enum Piece {
        case text(String)
        case output([JinjaToken], line: Int)
        case statement([JinjaToken], line: Int)
    }

    static func pieces(of source: String, trimBlocks: Bool = true, lstripBlocks: Bool = true) throws -> [Piece] {
        let chars = Array(source.unicodeScalars)
        var pieces: [Piece] = []
        var text: [Unicode.Scalar] = []
        var i = 0
        var line = 1
        var stripNextLeading = false
        var trimNextNewline = false

        func flushText() {
            if !text.isEmpty {
                var view = String.UnicodeScalarView()
                view.append(contentsOf: text)
                pieces.append(.text(String(view)))
            }
            text = []
        }

        while i < chars.count {
            let c = chars[i]
            let isTagStart = c == "{" && i + 1 < chars.count && (chars[i + 1] == "{" || chars[i + 1] == "%" || chars[i + 1] == "#")
            if !isTagStart {
                if stripNextLeading {
                    if c.properties.isWhitespace { if c == "\n" { line += 1 }; i += 1; continue }
                    stripNextLeading = false
                }
                if trimNextNewline {
                    trimNextNewline = false
                    if c == "\n" { line += 1; i += 1; continue }
                    if c == "\r" && i + 1 < chars.count && chars[i + 1] == "\n" { line += 1; i += 2; continue }
                }
                if c == "\n" { line += 1 }
                text.append(c)
                i += 1
                continue
            }
            stripNextLeading = false
            trimNextNewline = false
            let kind = chars[i + 1]
            var j = i + 2
            var leftStrip = false
            var leftKeep = false
            if j < chars.count && chars[j] == "-" { leftStrip = true; j += 1 } else if j < chars.count && chars[j] == "+" { leftKeep = true; j += 1 }
            if leftStrip {
                while let last = text.last, last.properties.isWhitespace { text.removeLast() }
            } else if lstripBlocks && kind != "{" && !leftKeep {
                // Remove spaces/tabs between the line start (in the source) and the tag.
                var k = i
                while k > 0 && (chars[k - 1] == " " || chars[k - 1] == "\t") { k -= 1 }
                if k == 0 || chars[k - 1] == "\n" {
                    var remove = i - k
                    while remove > 0, let last = text.last, last == " " || last == "\t" { text.removeLast(); remove -= 1 }
                }
            }
            flushText()
            let startLine = line
            if kind == "#" {
                // Comment: find "#}" (optionally "-#}").
                var k = j
                var found = false
                while k + 1 < chars.count {
                    if chars[k] == "#" && chars[k + 1] == "}" { found = true; break }
                    if chars[k] == "\n" { line += 1 }
                    k += 1
                }
                guard found else { throw TemplateError("unterminated comment", line: startLine) }
                if k > j && chars[k - 1] == "-" { stripNextLeading = true } else if trimBlocks { trimNextNewline = true }
                i = k + 2
                continue
            }
            let close: Unicode.Scalar = kind == "{" ? "}" : "%"
            var lexer = JinjaTokenizer(chars: chars, index: j, line: line)
            let tokens = try lexer.tokenize(until: close)
            line = lexer.line
            i = lexer.index
            if lexer.rightStrip { stripNextLeading = true } else if trimBlocks && kind == "%" { trimNextNewline = true }
            if kind == "{" {
                pieces.append(.output(tokens, line: startLine))
            } else {
                // {% raw %} … {% endraw %} keeps its body as text.
                if tokens.count == 1, case .name("raw") = tokens[0].kind {
                    var body: [Unicode.Scalar] = []
                    var k = i
                    var endFound = false
                    while k < chars.count {
                        if chars[k] == "{" && k + 1 < chars.count && chars[k + 1] == "%" {
                            var probe = JinjaTokenizer(chars: chars, index: k + 2 + (k + 2 < chars.count && chars[k + 2] == "-" ? 1 : 0), line: line)
                            if let inner = try? probe.tokenize(until: "%"), inner.count == 1, case .name("endraw") = inner[0].kind {
                                i = probe.index
                                endFound = true
                                break
                            }
                        }
                        body.append(chars[k])
                        k += 1
                    }
                    guard endFound else { throw TemplateError("{% raw %} without {% endraw %}", line: startLine) }
                    var view = String.UnicodeScalarView()
                    view.append(contentsOf: body)
                    pieces.append(.text(String(view)))
                    continue
                }
                pieces.append(.statement(tokens, line: startLine))
            }
        }
        flushText()
        return pieces
    }
}

/// A token inside `{{ … }}` or `{% … %}`.
struct JinjaToken: Equatable {
    enum Kind: Equatable {
        case name(String)
        case string(String)
        case int(Int)
        case double(Double)
        case op(String)
    }
    let kind: Kind
    let line: Int
}

/// Tokenizes expression text up to the closing `}}` or `%}`.
struct JinjaTokenizer {
    let chars: [Unicode.Scalar]
    var index: Int
    var line: Int
    var rightStrip = false

    static let operators: [String] = ["**", "//", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "~", "<", ">", "=",
                                      "(", ")", "[", "]", "{", "}", ",", ".", ":", "|"]

    mutating func tokenize(until close: Unicode.Scalar) throws -> [JinjaToken] {
        var tokens: [JinjaToken] = []
        var depth = 0
        while true {
            while index < chars.count && chars[index].properties.isWhitespace {
                if chars[index] == "\n" { line += 1 }
                index += 1
            }
            guard index < chars.count else { throw TemplateError("tag not closed", line: line) }
            let c = chars[index]
            // Closing delimiter (optionally preceded by '-' or '+').
            if depth == 0 {
                if (c == "-" || c == "+") && index + 2 < chars.count && chars[index + 1] == close && chars[index + 2] == "}" {
                    rightStrip = c == "-"
                    index += 3
                    return tokens
                }
                if c == close && index + 1 < chars.count && chars[index + 1] == "}" {
                    index += 2
                    return tokens
                }
            }
            if c == "'" || c == "\"" {
                tokens.append(JinjaToken(kind: .string(try readString(quote: c)), line: line))
                continue
            }
            if c.properties.numericType != nil && c.isASCII {
                tokens.append(JinjaToken(kind: readNumber(), line: line))
                continue
            }
            if c.properties.isAlphabetic || c == "_" {
                var name = ""
                while index < chars.count && (chars[index].properties.isAlphabetic || chars[index] == "_" || (chars[index].isASCII && chars[index].properties.numericType != nil)) {
                    name.unicodeScalars.append(chars[index])
                    index += 1
                }
                tokens.append(JinjaToken(kind: .name(name), line: line))
                continue
            }
            var matched = false
            for op in Self.operators {
                let opScalars = Array(op.unicodeScalars)
                if index + opScalars.count <= chars.count && Array(chars[index..<(index + opScalars.count)]) == opScalars {
                    if op == "(" || op == "[" || op == "{" { depth += 1 }
                    if op == ")" || op == "]" || op == "}" { depth = max(0, depth - 1) }
                    tokens.append(JinjaToken(kind: .op(op), line: line))
                    index += opScalars.count
                    matched = true
                    break
                }
            }
            if !matched { throw TemplateError("unexpected character '\(Character(c))' in tag", line: line) }
        }
    }

    mutating func readString(quote: Unicode.Scalar) throws -> String {
        let startLine = line
        index += 1
        var value = String.UnicodeScalarView()
        while index < chars.count {
            let c = chars[index]
            if c == quote { index += 1; return String(value) }
            if c == "\\" && index + 1 < chars.count {
                let e = chars[index + 1]
                index += 2
                switch e {
                case "n": value.append("\n")
                case "t": value.append("\t")
                case "r": value.append("\r")
                case "\\": value.append("\\")
                case "'": value.append("'")
                case "\"": value.append("\"")
                case "0": value.append("\0")
                case "u", "x", "U":
                    let width = e == "x" ? 2 : (e == "u" ? 4 : 8)
                    var hex = ""
                    for _ in 0..<width where index < chars.count { hex.unicodeScalars.append(chars[index]); index += 1 }
                    if let code = UInt32(hex, radix: 16), let scalar = Unicode.Scalar(code) { value.append(scalar) }
                    else { throw TemplateError("invalid \\\(e) escape in string", line: line) }
                default:
                    value.append("\\"); value.append(e)
                }
                continue
            }
            if c == "\n" { line += 1 }
            value.append(c)
            index += 1
        }
        throw TemplateError("unterminated string", line: startLine)
    }

    mutating func readNumber() -> JinjaToken.Kind {
        var text = ""
        var isDouble = false
        while index < chars.count {
            let c = chars[index]
            if c.isASCII && c.properties.numericType != nil || c == "_" {
                if c != "_" { text.unicodeScalars.append(c) }
                index += 1
            } else if c == "." && !isDouble && index + 1 < chars.count && chars[index + 1].isASCII && chars[index + 1].properties.numericType != nil {
                isDouble = true
                text.append(".")
                index += 1
            } else if (c == "e" || c == "E") && index + 1 < chars.count && (chars[index + 1].properties.numericType != nil || chars[index + 1] == "-" || chars[index + 1] == "+") {
                isDouble = true
                text.unicodeScalars.append(c)
                index += 1
                if chars[index] == "-" || chars[index] == "+" { text.unicodeScalars.append(chars[index]); index += 1 }
            } else {
                break
            }
        }
        if !isDouble, let value = Int(text) { return .int(value) }
        return .double(Double(text) ?? 0)
    }
}
