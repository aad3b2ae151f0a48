import RefineryCore

/// Reads a JSON document byte by byte against a `JSONSchemaNode`, refusing any byte after which
/// no schema-valid document could follow — so every accepted prefix extends to a valid document
/// — and says the shortest bytes that complete it. Compact JSON only: no whitespace between
/// tokens, no `\u` escapes, raw bytes ≥ 0x20 in strings (UTF-8 passes through).
public struct JSONMatcher: Sendable {
    enum NumberState: Sendable { case start, minus, zero, digits, dot, fraction, exponent, exponentSign, exponentDigits }

    enum ObjectPhase: Sendable, Equatable {
        /// Schema object: the next property to write (after its key literal and value).
        case property(Int)
        /// Free-form: right after `{`, after a comma (a key next), after a key (`:` next), after a
        /// value (`,` or `}`).
        case open, afterComma, afterKey, afterValue
    }

    enum Frame: Sendable {
        case value(JSONSchemaNode)
        case literal(candidates: [[UInt8]], matched: Int)
        case string(StringState)
        case number(integer: Bool, state: NumberState)
        case object(properties: [JSONSchemaNode.Property], phase: ObjectPhase)
        /// `afterItem`: an item has been read (`count` of them); else right after `[`.
        case array(items: JSONSchemaNode, minItems: Int, maxItems: Int?, count: Int, afterItem: Bool)
        /// Pushed under a value whose end the parent must see (a key literal's value).
        case then(JSONSchemaNode)
    }

    /// An open string: its limits, the characters so far, and where its UTF-8 stands.
    struct StringState: Sendable {
        var minLength = 0, maxLength: Int? = nil, needsGraphic = false
        var count = 0, graphic = false, escaped = false
        /// Continuation bytes still owed by the current character, and the range the next one must be in.
        var owed = 0, low: UInt8 = 0x80, high: UInt8 = 0xBF

        /// Free of limits, nothing owed: any plain content byte sequence of whole characters is fine here.
        var acceptsPlainContent: Bool { maxLength == nil && !escaped && owed == 0 }
    }

    private(set) var stack: [Frame]

    public init(_ root: JSONSchemaNode) { stack = [.value(root)] }

    /// True once a whole document has been read.
    public var isComplete: Bool { stack.isEmpty }

    /// Reads `bytes`; false (and the matcher unchanged) if any would leave no valid document.
    public mutating func feed<S: Sequence>(_ bytes: S) -> Bool where S.Element == UInt8 {
        var copy = self
        for byte in bytes where !copy.feed(byte) { return false }
        self = copy
        return true
    }

    /// Reads one byte; false if it cannot continue a valid document (the matcher may then be
    /// half-changed: use `feed(_:)` on a copy).
    public mutating func feed(_ byte: UInt8) -> Bool {
        while let top = stack.last {
            switch top {
            case let .value(node):
                stack.removeLast()
                guard start(node, with: byte) else { return false }
                return true
            case let .then(node):
                stack[stack.count - 1] = .value(node)
                continue
            case let .literal(candidates, matched):
                let extended = candidates.filter { $0.count > matched && $0[matched] == byte }
                if !extended.isEmpty {
                    if extended.allSatisfy({ $0.count == matched + 1 }) { stack.removeLast() } else {
                        stack[stack.count - 1] = .literal(candidates: extended, matched: matched + 1)
                    }
                    return true
                }
                guard candidates.contains(where: { $0.count == matched }) else { return false }
                stack.removeLast()  // a complete literal (e.g. the number 1 of [1, 10]) ends here
                continue
            case var .string(string):
                switch Self.stringByte(byte, &string) {
                case .refused: return false
                case .closed: stack.removeLast()
                case .inside: stack[stack.count - 1] = .string(string)
                }
                return true
            case let .number(integer, state):
                if let next = Self.advance(state, byte, integer: integer) {
                    stack[stack.count - 1] = .number(integer: integer, state: next)
                    return true
                }
                guard Self.accepting(state) else { return false }
                stack.removeLast()  // the number ended; the byte belongs to the parent
                continue
            case let .object(properties, phase):
                return objectByte(byte, properties: properties, phase: phase)
            case let .array(items, minItems, maxItems, count, afterItem):
                if byte == UInt8(ascii: "]") {
                    guard count >= minItems else { return false }
                    stack.removeLast()
                    return true
                }
                // An item starts: the array counts it now (it ends before the array sees a byte again).
                if afterItem {
                    guard byte == UInt8(ascii: ","), maxItems.map({ count < $0 }) ?? true else { return false }
                    stack[stack.count - 1] = .array(items: items, minItems: minItems, maxItems: maxItems, count: count + 1, afterItem: true)
                    stack.append(.value(items))
                    return true
                }
                guard maxItems.map({ $0 > 0 }) ?? true else { return false }
                stack[stack.count - 1] = .array(items: items, minItems: minItems, maxItems: maxItems, count: 1, afterItem: true)
                stack.append(.value(items))
                continue
            }
        }
        return false  // the document is complete: nothing may follow
    }

    /// Starts a value of `node` with its first byte.
    private mutating func start(_ node: JSONSchemaNode, with byte: UInt8) -> Bool {
        switch node {
        case .anyValue:
            switch byte {
            case UInt8(ascii: "{"): stack.append(.object(properties: [], phase: .open)); return true
            case UInt8(ascii: "["):
                stack.append(.array(items: .anyValue, minItems: 0, maxItems: nil, count: 0, afterItem: false)); return true
            case UInt8(ascii: "\""):
                stack.append(.string(StringState())); return true
            case UInt8(ascii: "t"), UInt8(ascii: "f"), UInt8(ascii: "n"):
                return start(.literals([Array("true".utf8), Array("false".utf8), Array("null".utf8)]), with: byte)
            default: return start(.number(integer: false), with: byte)
            }
        case let .object(properties, freeForm):
            guard byte == UInt8(ascii: "{") else { return false }
            stack.append(.object(properties: properties, phase: freeForm ? .open : .property(0)))
            return true
        case let .array(items, minItems, maxItems):
            guard byte == UInt8(ascii: "[") else { return false }
            stack.append(.array(items: items, minItems: minItems, maxItems: maxItems, count: 0, afterItem: false))
            return true
        case let .string(minLength, maxLength, needsGraphic):
            guard byte == UInt8(ascii: "\"") else { return false }
            stack.append(.string(StringState(minLength: minLength, maxLength: maxLength, needsGraphic: needsGraphic)))
            return true
        case let .number(integer):
            guard let state = Self.advance(.start, byte, integer: integer) else { return false }
            stack.append(.number(integer: integer, state: state))
            return true
        case .boolean:
            return start(.literals([Array("true".utf8), Array("false".utf8)]), with: byte)
        case .null:
            return start(.literals([Array("null".utf8)]), with: byte)
        case let .literals(texts):
            stack.append(.literal(candidates: texts, matched: 0))
            return feed(byte)
        case let .choice(options):
            guard let option = options.first(where: { $0.firstBytes.contains(byte) }) else { return false }
            return start(option, with: byte)
        }
    }

    private mutating func objectByte(_ byte: UInt8, properties: [JSONSchemaNode.Property], phase: ObjectPhase) -> Bool {
        switch phase {
        case let .property(index):
            if index == properties.count {
                guard byte == UInt8(ascii: "}") else { return false }
                stack.removeLast()
                return true
            }
            // The key, written whole (with the comma before all but the first), then the value.
            let key = (index > 0 ? "," : "") + JSONValue.string(properties[index].name).compactText + ":"
            stack[stack.count - 1] = .object(properties: properties, phase: .property(index + 1))
            stack.append(.then(properties[index].node))
            stack.append(.literal(candidates: [Array(key.utf8)], matched: 0))
            return feed(byte)
        case .open, .afterComma:
            if phase == .open && byte == UInt8(ascii: "}") { stack.removeLast(); return true }
            guard byte == UInt8(ascii: "\"") else { return false }
            stack[stack.count - 1] = .object(properties: properties, phase: .afterKey)
            stack.append(.string(StringState()))
            return true
        case .afterKey:
            guard byte == UInt8(ascii: ":") else { return false }
            stack[stack.count - 1] = .object(properties: properties, phase: .afterValue)
            stack.append(.value(.anyValue))
            return true
        case .afterValue:
            if byte == UInt8(ascii: "}") { stack.removeLast(); return true }
            guard byte == UInt8(ascii: ",") else { return false }
            stack[stack.count - 1] = .object(properties: properties, phase: .afterComma)
            return true
        }
    }

    static let escapes = Set("\"\\/bfnrt".utf8)

    /// One byte inside a string (after its opening quote): escapes, the closing quote (when the
    /// limits are met), and only well-formed UTF-8 (no overlong forms, surrogates or values past
    /// U+10FFFF).
    private static func stringByte(_ byte: UInt8, _ string: inout StringState) -> StringStep {
        if string.owed > 0 {
            guard byte >= string.low && byte <= string.high else { return .refused }
            string.owed -= 1
            (string.low, string.high) = (0x80, 0xBF)
            return .inside
        }
        if string.escaped {
            guard escapes.contains(byte) else { return .refused }
            string.count += 1
            string.graphic = string.graphic || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") || byte == UInt8(ascii: "/")
            string.escaped = false
            return .inside
        }
        if byte == UInt8(ascii: "\"") {
            guard string.count >= string.minLength, string.graphic || !string.needsGraphic else { return .refused }
            return .closed
        }
        guard byte >= 0x20 else { return .refused }
        if let maxLength = string.maxLength, string.count >= maxLength { return .refused }
        switch byte {
        case UInt8(ascii: "\\"): string.escaped = true; return .inside
        case 0x20..<0x80:
            string.count += 1
            string.graphic = string.graphic || byte > 0x20 && byte < 0x7F
            return .inside
        case 0xC2...0xDF: string.owed = 1
        case 0xE0: (string.owed, string.low) = (2, 0xA0)
        case 0xE1...0xEC, 0xEE, 0xEF: string.owed = 2
        case 0xED: (string.owed, string.high) = (2, 0x9F)
        case 0xF0: (string.owed, string.low) = (3, 0x90)
        case 0xF1...0xF3: string.owed = 3
        case 0xF4: (string.owed, string.high) = (3, 0x8F)
        default: return .refused
        }
        string.count += 1
        return .inside
    }
    enum StringStep { case refused, inside, closed }


    static func advance(_ state: NumberState, _ byte: UInt8, integer: Bool) -> NumberState? {
        let digit = byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")
        switch state {
        case .start: return byte == UInt8(ascii: "-") ? .minus : byte == UInt8(ascii: "0") ? .zero : digit ? .digits : nil
        case .minus: return byte == UInt8(ascii: "0") ? .zero : digit ? .digits : nil
        case .zero, .digits:
            if state == .digits && digit { return .digits }
            if integer { return nil }
            return byte == UInt8(ascii: ".") ? .dot : (byte == UInt8(ascii: "e") || byte == UInt8(ascii: "E")) ? .exponent : nil
        case .dot: return digit ? .fraction : nil
        case .fraction:
            return digit ? .fraction : (byte == UInt8(ascii: "e") || byte == UInt8(ascii: "E")) ? .exponent : nil
        case .exponent: return byte == UInt8(ascii: "+") || byte == UInt8(ascii: "-") ? .exponentSign : digit ? .exponentDigits : nil
        case .exponentSign, .exponentDigits: return digit ? .exponentDigits : nil
        }
    }

    static func accepting(_ state: NumberState) -> Bool {
        state == .zero || state == .digits || state == .fraction || state == .exponentDigits
    }

    /// The shortest bytes that complete the document from here (empty when complete).
    public var completion: [UInt8] {
        var copy = self
        var bytes: [UInt8] = []
        var guardCount = 0
        while !copy.stack.isEmpty && guardCount < 1 << 16 {
            guardCount += 1
            let next = copy.cheapestNext
            if next.isEmpty {
                // A complete literal or number: it ends where its parent's next byte begins.
                copy.stack.removeLast()
                continue
            }
            // The cheapest bytes are valid by construction: fed in place, no copy to roll back to.
            var fed = true
            for byte in next where fed { fed = copy.feed(byte) }
            guard fed else { break }
            bytes.append(contentsOf: next)
        }
        return bytes
    }

    /// A few bytes that make the cheapest progress from the top frame.
    private var cheapestNext: [UInt8] {
        guard let top = stack.last else { return [] }
        switch top {
        case let .value(node), let .then(node): return Self.shortest(node)
        case let .literal(candidates, matched):
            let shortest = candidates.min { $0.count < $1.count } ?? []
            return shortest.count > matched ? Array(shortest[matched...]) : []
        case let .string(string):
            if string.escaped { return [UInt8(ascii: "/")] }
            if string.owed > 0 { return [string.low] + Array(repeating: 0x80, count: string.owed - 1) }
            if string.count < string.minLength || (string.needsGraphic && !string.graphic) { return [UInt8(ascii: "a")] }
            return [UInt8(ascii: "\"")]
        case let .number(_, state):
            return Self.accepting(state) ? [] : [UInt8(ascii: "0")]
        case let .object(properties, phase):
            switch phase {
            case let .property(index):
                guard index < properties.count else { return [UInt8(ascii: "}")] }
                return Array(((index > 0 ? "," : "") + JSONValue.string(properties[index].name).compactText + ":").utf8)
            case .open, .afterValue: return [UInt8(ascii: "}")]
            case .afterComma: return [UInt8(ascii: "\"")]
            case .afterKey: return [UInt8(ascii: ":")]
            }
        case let .array(items, minItems, _, count, afterItem):
            if count >= minItems { return [UInt8(ascii: "]")] }
            return (afterItem ? [UInt8(ascii: ",")] : []) + Self.shortest(items)
        }
    }

    /// The shortest JSON text of `node`.
    static func shortest(_ node: JSONSchemaNode) -> [UInt8] {
        switch node {
        case .anyValue, .number: return [UInt8(ascii: "0")]
        case .boolean: return Array("true".utf8)
        case .null: return Array("null".utf8)
        case let .literals(texts): return texts.min { $0.count < $1.count } ?? []
        case let .choice(options): return options.map(shortest).min { $0.count < $1.count } ?? []
        case let .string(minLength, _, needsGraphic):
            return [UInt8(ascii: "\"")] + Array(repeating: UInt8(ascii: "a"), count: max(minLength, needsGraphic ? 1 : 0)) + [UInt8(ascii: "\"")]
        case let .array(items, minItems, _):
            let item = shortest(items)
            return [UInt8(ascii: "[")] + Array((0..<minItems).map { $0 == 0 ? item : [UInt8(ascii: ",")] + item }.joined()) + [UInt8(ascii: "]")]
        case let .object(properties, freeForm):
            if freeForm { return Array("{}".utf8) }
            var bytes: [UInt8] = [UInt8(ascii: "{")]
            for (index, property) in properties.enumerated() {
                bytes += Array(((index > 0 ? "," : "") + JSONValue.string(property.name).compactText + ":").utf8) + shortest(property.node)
            }
            return bytes + [UInt8(ascii: "}")]
        }
    }
}
