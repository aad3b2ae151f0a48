import Foundation
import RefineryCore

/// A value inside the template engine, with Python's semantics for printing, truthiness and
/// comparison (chat templates are written against Python's Jinja).
enum JinjaValue {
    case undefined(String)
    case none
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    case list([JinjaValue])
    case dict(JinjaDict)
    case namespace(NamespaceBox)
    case function(JinjaFunction)

    init(json: JSONValue) {
        switch json {
        case .null: self = .none
        case let .bool(b): self = .bool(b)
        case let .int(i): self = .int(i)
        case let .double(d): self = .double(d)
        case let .string(s): self = .string(s)
        case let .array(items): self = .list(items.map(JinjaValue.init(json:)))
        case let .object(pairs):
            var dict = JinjaDict()
            for (key, value) in pairs { dict[.string(key)] = JinjaValue(json: value) }
            self = .dict(dict)
        }
    }

    var isUndefined: Bool { if case .undefined = self { return true } else { return false } }

    var truthy: Bool {
        switch self {
        case .undefined, .none: return false
        case let .bool(b): return b
        case let .int(i): return i != 0
        case let .double(d): return d != 0
        case let .string(s): return !s.isEmpty
        case let .list(l): return !l.isEmpty
        case let .dict(d): return !d.isEmpty
        case .namespace, .function: return true
        }
    }

    /// `str(value)` as Python prints it inside `{{ }}`.
    var printed: String {
        switch self {
        case .undefined: return ""
        case let .string(s): return s
        default: return repr
        }
    }

    /// Python's `repr`.
    var repr: String {
        switch self {
        case .undefined: return ""
        case .none: return "None"
        case let .bool(b): return b ? "True" : "False"
        case let .int(i): return String(i)
        case let .double(d):
            if d.isNaN { return "nan" }
            if d.isInfinite { return d > 0 ? "inf" : "-inf" }
            return JSONWriter.pythonFloatRepr(d)
        case let .string(s): return Self.pythonStringRepr(s)
        case let .list(items): return "[" + items.map(\.repr).joined(separator: ", ") + "]"
        case let .dict(d): return "{" + d.pairs.map { "\($0.0.repr): \($0.1.repr)" }.joined(separator: ", ") + "}"
        case .namespace: return "<Namespace>"
        case .function: return "<function>"
        }
    }

    static func pythonStringRepr(_ s: String) -> String {
        let quote: Character = s.contains("'") && !s.contains("\"") ? "\"" : "'"
        var out = String(quote)
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if Character(scalar) == quote { out += "\\" + String(quote) }
                else if scalar.value < 0x20 || scalar.value == 0x7F { out += String(format: "\\x%02x", scalar.value) }
                else { out.unicodeScalars.append(scalar) }
            }
        }
        out.append(quote)
        return out
    }

    /// Conversion for `tojson`.
    func toJSON() throws -> JSONValue {
        switch self {
        case .undefined, .none: return .null
        case let .bool(b): return .bool(b)
        case let .int(i): return .int(i)
        case let .double(d): return .double(d)
        case let .string(s): return .string(s)
        case let .list(items): return .array(try items.map { try $0.toJSON() })
        case let .dict(d):
            return .object(try d.pairs.map { key, value in
                guard case let .string(k) = key else { return (key.printed, try value.toJSON()) }
                return (k, try value.toJSON())
            })
        case let .namespace(box): return .object(try box.values.pairs.map { ($0.0.printed, try $0.1.toJSON()) })
        case .function: throw TemplateError("tojson: a function cannot be serialised")
        }
    }

    var typeName: String {
        switch self {
        case .undefined: return "undefined"
        case .none: return "NoneType"
        case .bool: return "bool"
        case .int: return "int"
        case .double: return "float"
        case .string: return "str"
        case .list: return "list"
        case .dict: return "dict"
        case .namespace: return "Namespace"
        case .function: return "function"
        }
    }

    /// Elements when iterated (`for x in value`).
    func iterate() throws -> [JinjaValue] {
        switch self {
        case .undefined, .none: return []
        case let .list(items): return items
        case let .dict(d): return d.pairs.map { $0.0 }
        case let .string(s): return s.map { .string(String($0)) }
        default: throw TemplateError("'\(typeName)' object is not iterable")
        }
    }

    /// Python equality.
    static func equal(_ a: JinjaValue, _ b: JinjaValue) -> Bool {
        switch (a, b) {
        case (.undefined, .undefined), (.none, .none): return true
        case let (.bool(x), .bool(y)): return x == y
        case let (.string(x), .string(y)): return x == y
        case let (.list(x), .list(y)): return x.count == y.count && zip(x, y).allSatisfy { equal($0, $1) }
        case let (.dict(x), .dict(y)):
            return x.count == y.count && x.pairs.allSatisfy { key, value in y[key].map { equal($0, value) } ?? false }
        default:
            if let x = a.number, let y = b.number { return x == y }
            return false
        }
    }

    /// Numeric value for int, float and bool (Python treats bools as ints).
    var number: Double? {
        switch self {
        case let .int(i): return Double(i)
        case let .double(d): return d
        case let .bool(b): return b ? 1 : 0
        default: return nil
        }
    }

    var hashKey: String {
        switch self {
        case let .string(s): return "s:" + s
        case let .int(i): return "n:" + String(Double(i))
        case let .double(d): return "n:" + String(d)
        case let .bool(b): return "n:" + (b ? "1.0" : "0.0")
        case .none: return "none"
        default: return "r:" + repr
        }
    }
}

/// An insertion-ordered dictionary (Python 3.7+ dict semantics).
struct JinjaDict {
    private(set) var pairs: [(JinjaValue, JinjaValue)] = []
    private var positions: [String: Int] = [:]

    var count: Int { pairs.count }
    var isEmpty: Bool { pairs.isEmpty }

    subscript(key: JinjaValue) -> JinjaValue? {
        get { positions[key.hashKey].map { pairs[$0].1 } }
        set {
            let hash = key.hashKey
            if let i = positions[hash] {
                if let newValue { pairs[i].1 = newValue } else {
                    pairs.remove(at: i)
                    positions = [:]
                    for (j, pair) in pairs.enumerated() { positions[pair.0.hashKey] = j }
                }
            } else if let newValue {
                positions[hash] = pairs.count
                pairs.append((key, newValue))
            }
        }
    }

    subscript(string key: String) -> JinjaValue? { self[.string(key)] }
}

/// The mutable object behind `namespace(...)`.
final class NamespaceBox {
    var values = JinjaDict()
}

/// A callable: a built-in global, a bound method or a macro.
struct JinjaFunction {
    let name: String
    let call: ([JinjaValue], [(String, JinjaValue)]) throws -> JinjaValue
}
