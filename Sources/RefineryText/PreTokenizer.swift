import Foundation
import RefineryCore

/// The `pre_tokenizer` section of `tokenizer.json`: splits normalized text into words.
indirect enum PreTokenizer: Sendable {
    case sequence([PreTokenizer])
    case split(regex: NSRegularExpression, behavior: SplitBehavior, invert: Bool)
    case byteLevel(addPrefixSpace: Bool, useRegex: Bool)
    case metaspace(replacement: Unicode.Scalar, prependScheme: PrependScheme, split: Bool)
    case digits(individual: Bool)
    case whitespaceSplit
    case whitespace
    /// BERT's: split on whitespace (dropped), then every punctuation character alone.
    case bert

    enum SplitBehavior: String { case isolated = "Isolated", removed = "Removed", mergedWithPrevious = "MergedWithPrevious", mergedWithNext = "MergedWithNext", contiguous = "Contiguous" }
    enum PrependScheme: String { case always, first, never }

    /// GPT-2's split pattern, used by `ByteLevel` with `use_regex`.
    static let gpt2Pattern = #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#

    static func parse(_ json: JSONValue?) throws -> PreTokenizer? {
        guard let json, !json.isNull else { return nil }
        guard let type = json["type"]?.stringValue else {
            throw TextError("tokenizer.json: pre_tokenizer without a \"type\"")
        }
        switch type {
        case "Sequence":
            return .sequence(try (json["pretokenizers"]?.arrayValue ?? []).compactMap { try parse($0) })
        case "Split":
            let pattern: String
            if let regex = json["pattern"]?["Regex"]?.stringValue {
                pattern = regex
            } else if let literal = json["pattern"]?["String"]?.stringValue {
                pattern = NSRegularExpression.escapedPattern(for: literal)
            } else {
                throw TextError("tokenizer.json: Split pre-tokenizer needs a pattern with \"Regex\" or \"String\"")
            }
            let behaviorName = json["behavior"]?.stringValue ?? "Isolated"
            guard let behavior = SplitBehavior(rawValue: behaviorName) else {
                throw TextError("tokenizer.json: unknown Split behavior \"\(behaviorName)\"")
            }
            return .split(regex: try compile(pattern), behavior: behavior, invert: json["invert"]?.boolValue ?? false)
        case "ByteLevel":
            return .byteLevel(addPrefixSpace: json["add_prefix_space"]?.boolValue ?? false,
                              useRegex: json["use_regex"]?.boolValue ?? true)
        case "Metaspace":
            let replacement = json["replacement"]?.stringValue?.unicodeScalars.first ?? "\u{2581}"
            var scheme = PrependScheme(rawValue: json["prepend_scheme"]?.stringValue ?? "always") ?? .always
            if json["prepend_scheme"] == nil, let add = json["add_prefix_space"]?.boolValue, !add { scheme = .never }
            return .metaspace(replacement: replacement, prependScheme: scheme, split: json["split"]?.boolValue ?? true)
        case "Digits":
            return .digits(individual: json["individual_digits"]?.boolValue ?? false)
        case "WhitespaceSplit": return .whitespaceSplit
        case "Whitespace": return .whitespace
        case "BertPreTokenizer": return .bert
        default:
            throw TextError("tokenizer.json: unsupported pre_tokenizer type \"\(type)\" (supported: Sequence, Split, ByteLevel, Metaspace, Digits, Whitespace, WhitespaceSplit, BertPreTokenizer)")
        }
    }

    /// Compiles a `tokenizers` (Oniguruma) pattern with ICU, mapping `\s`/`\S` to Unicode
    /// White_Space as Oniguruma does (ICU's `\s` misses U+000B and U+0085).
    static func compile(_ pattern: String) throws -> NSRegularExpression {
        var out = ""
        var inClass = 0
        var chars = Array(pattern)
        var i = 0
        while i < chars.count {
            let c = chars[i]
            if c == "\\" && i + 1 < chars.count {
                let n = chars[i + 1]
                if n == "s" {
                    out += inClass > 0 ? #"\p{White_Space}"# : #"\p{White_Space}"#
                } else if n == "S" {
                    out += inClass > 0 ? #"\P{White_Space}"# : #"\P{White_Space}"#
                } else {
                    out.append(c); out.append(n)
                }
                i += 2
                continue
            }
            if c == "[" { inClass += 1 } else if c == "]" && inClass > 0 { inClass -= 1 }
            out.append(c)
            i += 1
        }
        chars = []
        do {
            return try NSRegularExpression(pattern: out, options: [])
        } catch {
            throw TextError("tokenizer.json: the pre-tokenizer pattern \(pattern) does not compile: \(error)")
        }
    }

    /// Splits each word further.
    func apply(_ words: [NormalizedText]) -> [NormalizedText] {
        switch self {
        case let .sequence(items):
            var current = words
            for item in items { current = item.apply(current) }
            return current
        case let .split(regex, behavior, invert):
            return words.flatMap { Self.split($0, regex: regex, behavior: behavior, invert: invert) }
        case let .byteLevel(addPrefixSpace, useRegex):
            return words.flatMap { word -> [NormalizedText] in
                var word = word
                if addPrefixSpace, let first = word.scalars.first, first != " " { word.prepend([" "]) }
                if useRegex {
                    return Self.split(word, regex: Self.gpt2Regex, behavior: .isolated, invert: false)
                }
                return [word]
            }
        case let .metaspace(replacement, scheme, split):
            return words.flatMap { word -> [NormalizedText] in
                var word = word
                word.replace([" "], with: [replacement])
                let startsWith = word.scalars.first == replacement
                if !startsWith && (scheme == .always || (scheme == .first && word.origins.first == 0)) {
                    word.prepend([replacement])
                }
                if !split { return [word] }
                return Self.splitOnScalar(word, replacement)
            }
        case let .digits(individual):
            return words.flatMap { word -> [NormalizedText] in
                var pieces: [NormalizedText] = []
                var start = 0
                var i = 0
                let isDigit = word.scalars.map { Self.isNumeric($0) }
                while i < word.scalars.count {
                    if isDigit[i] {
                        if start < i { pieces.append(word.slice(start..<i)) }
                        var end = i + 1
                        if !individual { while end < word.scalars.count && isDigit[end] { end += 1 } }
                        pieces.append(word.slice(i..<end))
                        start = end
                        i = end
                    } else {
                        i += 1
                    }
                }
                if start < word.scalars.count { pieces.append(word.slice(start..<word.scalars.count)) }
                return pieces
            }
        case .whitespaceSplit:
            return words.flatMap { word in
                Self.runs(word) { !$0.properties.isWhitespace }
            }
        case .whitespace:
            return words.flatMap { word in
                Self.split(word, regex: Self.whitespaceRegex, behavior: .isolated, invert: true)
            }
        case .bert:
            return words.flatMap { word in
                Self.runs(word) { !$0.properties.isWhitespace }.flatMap(Self.isolatingPunctuation)
            }
        }
    }

    static let gpt2Regex: NSRegularExpression = {
        do { return try compile(gpt2Pattern) } catch { fatalError("GPT-2 pattern must compile: \(error)") }
    }()
    static let whitespaceRegex: NSRegularExpression = {
        do { return try compile(#"\w+|[^\w\s]+"#) } catch { fatalError("whitespace pattern must compile: \(error)") }
    }()

    /// Splits `word` so that every punctuation character (ASCII punctuation or a Unicode P* category)
    /// stands alone.
    static func isolatingPunctuation(_ word: NormalizedText) -> [NormalizedText] {
        var pieces: [NormalizedText] = []
        var start = 0
        for (i, scalar) in word.scalars.enumerated() where isBertPunctuation(scalar) {
            if start < i { pieces.append(word.slice(start..<i)) }
            pieces.append(word.slice(i..<(i + 1)))
            start = i + 1
        }
        if start == 0 { return [word] }
        if start < word.scalars.count { pieces.append(word.slice(start..<word.scalars.count)) }
        return pieces
    }

    static func isBertPunctuation(_ scalar: Unicode.Scalar) -> Bool { Punctuation.contains(scalar) }

    static func isNumeric(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.properties.generalCategory {
        case .decimalNumber, .letterNumber, .otherNumber: return true
        default: return false
        }
    }

    /// Maximal runs of scalars for which `keep` holds.
    static func runs(_ word: NormalizedText, _ keep: (Unicode.Scalar) -> Bool) -> [NormalizedText] {
        var pieces: [NormalizedText] = []
        var start: Int? = nil
        for (i, scalar) in word.scalars.enumerated() {
            if keep(scalar) { if start == nil { start = i } } else if let s = start {
                pieces.append(word.slice(s..<i)); start = nil
            }
        }
        if let s = start { pieces.append(word.slice(s..<word.scalars.count)) }
        return pieces
    }

    /// Splits before each `delimiter` (the delimiter starts the next piece), as Metaspace does.
    static func splitOnScalar(_ word: NormalizedText, _ delimiter: Unicode.Scalar) -> [NormalizedText] {
        var pieces: [NormalizedText] = []
        var start = 0
        for (i, scalar) in word.scalars.enumerated() where scalar == delimiter && i > start {
            pieces.append(word.slice(start..<i))
            start = i
        }
        if start < word.scalars.count { pieces.append(word.slice(start..<word.scalars.count)) }
        return pieces
    }

    /// Regex split with `tokenizers`' delimiter behaviours.
    static func split(_ word: NormalizedText, regex: NSRegularExpression, behavior: SplitBehavior, invert: Bool) -> [NormalizedText] {
        if word.isEmpty { return [] }
        // Match on UTF-16 and convert ranges back to scalar indices.
        var utf16Starts: [Int] = []  // utf16 offset of each scalar
        utf16Starts.reserveCapacity(word.scalars.count + 1)
        var utf16 = 0
        for scalar in word.scalars {
            utf16Starts.append(utf16)
            utf16 += scalar.utf16.count
        }
        utf16Starts.append(utf16)
        var scalarAt: [Int: Int] = [:]
        for (i, offset) in utf16Starts.enumerated() { scalarAt[offset] = i }
        let string = word.string
        let matches = regex.matches(in: string, options: [], range: NSRange(location: 0, length: utf16))
        // (range, isMatch) covering the whole word.
        var parts: [(Range<Int>, Bool)] = []
        var cursor = 0
        for match in matches where match.range.length > 0 {
            guard let s = scalarAt[match.range.location], let e = scalarAt[match.range.location + match.range.length] else { continue }
            if cursor < s { parts.append((cursor..<s, false)) }
            parts.append((s..<e, true))
            cursor = e
        }
        if cursor < word.scalars.count { parts.append((cursor..<word.scalars.count, false)) }
        if invert { parts = parts.map { ($0.0, !$0.1) } }

        var result: [Range<Int>] = []
        switch behavior {
        case .isolated:
            result = parts.map { $0.0 }
        case .removed:
            result = parts.filter { !$0.1 }.map { $0.0 }
        case .mergedWithPrevious:
            for (range, isMatch) in parts {
                if isMatch, let last = result.last, last.upperBound == range.lowerBound {
                    result[result.count - 1] = last.lowerBound..<range.upperBound
                } else {
                    result.append(range)
                }
            }
        case .mergedWithNext:
            var pending: Range<Int>? = nil
            for (range, isMatch) in parts {
                if isMatch {
                    if let p = pending { result.append(p) }
                    pending = range
                } else if let p = pending {
                    result.append(p.lowerBound..<range.upperBound)
                    pending = nil
                } else {
                    result.append(range)
                }
            }
            if let p = pending { result.append(p) }
        case .contiguous:
            var previousMatch: Bool? = nil
            for (range, isMatch) in parts {
                if isMatch, previousMatch == true, let last = result.last {
                    result[result.count - 1] = last.lowerBound..<range.upperBound
                } else {
                    result.append(range)
                }
                previousMatch = isMatch
            }
        }
        return result.filter { !$0.isEmpty }.map { word.slice($0) }
    }
}
