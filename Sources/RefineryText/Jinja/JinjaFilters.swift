import Foundation
import RefineryCore

/// Built-in filters and tests (the ones chat templates use), with transformers' `tojson`.
enum JinjaFilters {
    static func kwarg(_ kwargs: [(String, JinjaValue)], _ name: String) -> JinjaValue? {
        kwargs.first(where: { $0.0 == name })?.1
    }

    static func apply(_ name: String, _ value: JinjaValue, args: [JinjaValue], kwargs: [(String, JinjaValue)],
                      interpreter: JinjaInterpreter) throws -> JinjaValue {
        switch name {
        case "trim":
            if case let .string(chars)? = args.first {
                let set = Set(chars)
                return .string(String(value.printed.drop(while: { set.contains($0) }).reversed().drop(while: { set.contains($0) }).reversed()))
            }
            return .string(value.printed.trimmingCharacters(in: .whitespacesAndNewlines))
        case "length", "count":
            switch value {
            case let .string(s): return .int(s.count)
            case let .list(l): return .int(l.count)
            case let .dict(d): return .int(d.count)
            case .undefined: return .int(0)
            default: throw TemplateError("object of type '\(value.typeName)' has no len()")
            }
        case "tojson":
            var indent: Int? = nil
            if case let .int(i)? = kwarg(kwargs, "indent") ?? args.first { indent = i }
            var json = try value.toJSON()
            if case .bool(true)? = kwarg(kwargs, "sort_keys") { json = sortKeys(json) }
            var out = ""
            JSONWriter.write(json, into: &out, pythonStyle: true, indent: indent, level: 0)
            return .string(out)
        case "upper": return .string(value.printed.uppercased())
        case "lower": return .string(value.printed.lowercased())
        case "title": return .string(title(value.printed))
        case "capitalize": return .string(capitalize(value.printed))
        case "string": return .string(value.printed)
        case "safe": return value
        case "e", "escape":
            return .string(value.printed.replacingAll("&", with: "&amp;").replacingAll("<", with: "&lt;")
                .replacingAll(">", with: "&gt;").replacingAll("\"", with: "&#34;").replacingAll("'", with: "&#39;"))
        case "default", "d":
            let fallback = args.first ?? kwarg(kwargs, "default_value") ?? .string("")
            var boolean = false
            if args.count > 1, case let .bool(b) = args[1] { boolean = b }
            if case let .bool(b)? = kwarg(kwargs, "boolean") { boolean = b }
            if value.isUndefined || (boolean && !value.truthy) { return fallback }
            return value
        case "first":
            let items = try value.iterate()
            return items.first ?? .undefined("first")
        case "last":
            let items = try value.iterate()
            return items.last ?? .undefined("last")
        case "join":
            var separator = ""
            if case let .string(s)? = args.first ?? kwarg(kwargs, "d") { separator = s }
            var items = try value.iterate()
            if case let .string(attribute)? = kwarg(kwargs, "attribute") {
                items = try items.map { try interpreter.member($0, attribute) }
            }
            return .string(items.map(\.printed).joined(separator: separator))
        case "replace":
            guard args.count >= 2 else { throw TemplateError("replace filter needs two arguments") }
            let old = args[0].printed
            return .string(old.isEmpty ? value.printed : value.printed.replacingAll(old, with: args[1].printed))
        case "list": return .list(try value.iterate())
        case "int":
            switch value {
            case let .int(i): return .int(i)
            case let .double(d): return .int(Int(d))
            case let .bool(b): return .int(b ? 1 : 0)
            case let .string(s): return .int(Int(s.trimmingCharacters(in: .whitespaces)) ?? Int(Double(s) ?? 0))
            default: return .int(0)
            }
        case "float":
            return .double(value.number ?? Double(value.printed.trimmingCharacters(in: .whitespaces)) ?? 0)
        case "abs":
            switch value {
            case let .int(i): return .int(abs(i))
            case let .double(d): return .double(abs(d))
            default: throw TemplateError("bad operand type for abs(): '\(value.typeName)'")
            }
        case "round":
            let precision: Int = { if case let .int(p)? = args.first { return p } else { return 0 } }()
            let scale = pow(10.0, Double(precision))
            return .double(((value.number ?? 0) * scale).rounded(.toNearestOrEven) / scale)
        case "items":
            guard case let .dict(d) = value else {
                if value.isUndefined { return .list([]) }
                throw TemplateError("items filter needs a mapping")
            }
            return .list(d.pairs.map { .list([$0.0, $0.1]) })
        case "dictsort":
            guard case let .dict(d) = value else { throw TemplateError("dictsort filter needs a mapping") }
            let sorted = try d.pairs.sorted { try JinjaOperators.compare("<", $0.0, $1.0) }
            return .list(sorted.map { .list([$0.0, $0.1]) })
        case "sort":
            var items = try value.iterate()
            let attribute: String? = { if case let .string(a)? = kwarg(kwargs, "attribute") { return a } else { return nil } }()
            var reverse = false
            if case let .bool(r)? = kwarg(kwargs, "reverse") ?? args.first { reverse = r }
            func key(_ v: JinjaValue) throws -> JinjaValue {
                let k = try attribute.map { try interpreter.member(v, $0) } ?? v
                if case let .string(s) = k { return .string(s.lowercased()) }
                return k
            }
            items = try items.sorted { try JinjaOperators.compare("<", try key($0), try key($1)) }
            return .list(reverse ? items.reversed() : items)
        case "reverse":
            if case let .string(s) = value { return .string(String(s.reversed())) }
            return .list(try value.iterate().reversed())
        case "unique":
            var seen = Set<String>()
            return .list(try value.iterate().filter { seen.insert($0.hashKey).inserted })
        case "sum":
            var total: JinjaValue = .int(0)
            for item in try value.iterate() { total = try JinjaOperators.binary("+", total, item) }
            return total
        case "map":
            let items = try value.iterate()
            if case let .string(attribute)? = kwarg(kwargs, "attribute") {
                return .list(try items.map { item in
                    let v = try interpreter.member(item, attribute)
                    if v.isUndefined, let d = kwarg(kwargs, "default") { return d }
                    return v
                })
            }
            guard case let .string(filterName)? = args.first else { throw TemplateError("map needs a filter name or attribute=") }
            return .list(try items.map { try apply(filterName, $0, args: Array(args.dropFirst()), kwargs: [], interpreter: interpreter) })
        case "select", "reject":
            let items = try value.iterate()
            return .list(try items.filter { item in
                let result: Bool
                if case let .string(testName)? = args.first {
                    result = try test(testName, item, args: Array(args.dropFirst()))
                } else {
                    result = item.truthy
                }
                return name == "select" ? result : !result
            })
        case "selectattr", "rejectattr":
            guard case let .string(attribute)? = args.first else { throw TemplateError("\(name) needs an attribute name") }
            let items = try value.iterate()
            return .list(try items.filter { item in
                let v = try interpreter.member(item, attribute)
                let result: Bool
                if args.count > 1, case let .string(testName) = args[1] {
                    result = try test(testName, v, args: Array(args.dropFirst(2)))
                } else {
                    result = v.truthy
                }
                return name == "selectattr" ? result : !result
            })
        case "indent":
            let width: Int = { if case let .int(w)? = args.first ?? kwarg(kwargs, "width") { return w } else { return 4 } }()
            var first = false
            if args.count > 1, case let .bool(f) = args[1] { first = f }
            if case let .bool(f)? = kwarg(kwargs, "first") { first = f }
            let pad = String(repeating: " ", count: width)
            let lines = value.printed.components(separatedBy: "\n")
            return .string(lines.enumerated().map { i, line in
                (i == 0 && !first) || line.isEmpty ? line : pad + line
            }.joined(separator: "\n"))
        case "format":
            return .string(try percentFormat(value.printed, .list(args)))
        case "wordcount":
            return .int(value.printed.split(whereSeparator: { $0.isWhitespace }).count)
        case "center":
            let width: Int = { if case let .int(w)? = args.first { return w } else { return 80 } }()
            let s = value.printed
            let total = max(0, width - s.count)
            let left = total / 2 + (total % 2 == 1 && width % 2 == 1 ? 1 : 0)
            return .string(String(repeating: " ", count: left) + s + String(repeating: " ", count: total - left))
        case "batch":
            guard case let .int(size)? = args.first, size > 0 else { throw TemplateError("batch needs a positive size") }
            let items = try value.iterate()
            return .list(stride(from: 0, to: items.count, by: size).map { .list(Array(items[$0..<min($0 + size, items.count)])) })
        default:
            throw TemplateError("unknown filter '\(name)'")
        }
    }

    static func test(_ name: String, _ value: JinjaValue, args: [JinjaValue]) throws -> Bool {
        switch name {
        case "defined": return !value.isUndefined
        case "undefined": return value.isUndefined
        case "none": if case .none = value { return true } else { return false }
        case "string": if case .string = value { return true } else { return false }
        case "number": switch value { case .int, .double: return true; default: return false }
        case "integer": if case .int = value { return true } else { return false }
        case "float": if case .double = value { return true } else { return false }
        case "boolean": if case .bool = value { return true } else { return false }
        case "true": if case .bool(true) = value { return true } else { return false }
        case "false": if case .bool(false) = value { return true } else { return false }
        case "mapping": switch value { case .dict, .namespace: return true; default: return false }
        case "sequence", "iterable":
            switch value { case .list, .string, .dict: return true; default: return false }
        case "callable": if case .function = value { return true } else { return false }
        case "odd": if case let .int(i) = value { return i % 2 != 0 } else { return false }
        case "even": if case let .int(i) = value { return i % 2 == 0 } else { return false }
        case "divisibleby":
            guard case let .int(i) = value, case let .int(d)? = args.first, d != 0 else { return false }
            return i % d == 0
        case "eq", "equalto", "==", "sameas": return JinjaValue.equal(value, args.first ?? .none)
        case "ne", "!=": return !JinjaValue.equal(value, args.first ?? .none)
        case "lt", "lessthan", "<": return try JinjaOperators.compare("<", value, args.first ?? .none)
        case "le", "<=": return try JinjaOperators.compare("<=", value, args.first ?? .none)
        case "gt", "greaterthan", ">": return try JinjaOperators.compare(">", value, args.first ?? .none)
        case "ge", ">=": return try JinjaOperators.compare(">=", value, args.first ?? .none)
        case "in": return try JinjaOperators.contains(args.first ?? .none, value)
        case "lower": return value.printed == value.printed.lowercased()
        case "upper": return value.printed == value.printed.uppercased()
        default: throw TemplateError("unknown test '\(name)'")
        }
    }

    static func sortKeys(_ json: JSONValue) -> JSONValue {
        switch json {
        case let .object(pairs): return .object(pairs.sorted { $0.0 < $1.0 }.map { ($0.0, sortKeys($0.1)) })
        case let .array(items): return .array(items.map(sortKeys))
        default: return json
        }
    }

    static func title(_ s: String) -> String {
        var result = ""
        var previousIsLetter = false
        for c in s {
            result += previousIsLetter ? c.lowercased() : c.uppercased()
            previousIsLetter = c.isLetter
        }
        return result
    }

    static func capitalize(_ s: String) -> String {
        guard let first = s.first else { return s }
        return first.uppercased() + s.dropFirst().lowercased()
    }

    /// Python's `str.split(sep, maxsplit)`.
    static func pythonSplit(_ s: String, separator: String?, maxSplit: Int) -> [String] {
        if let separator, !separator.isEmpty {
            var parts: [String] = []
            var rest = Substring(s)
            while maxSplit < 0 || parts.count < maxSplit, let range = rest.range(of: separator) {
                parts.append(String(rest[..<range.lowerBound]))
                rest = rest[range.upperBound...]
            }
            parts.append(String(rest))
            return parts
        }
        var parts: [String] = []
        var rest = Substring(s).drop(while: { $0.isWhitespace })
        while !rest.isEmpty {
            if maxSplit >= 0 && parts.count == maxSplit { parts.append(String(rest)); break }
            let word = rest.prefix(while: { !$0.isWhitespace })
            parts.append(String(word))
            rest = rest.dropFirst(word.count).drop(while: { $0.isWhitespace })
        }
        return parts
    }

    /// `"%s and %d" % args` for the common conversions.
    static func percentFormat(_ format: String, _ argument: JinjaValue) throws -> String {
        let args: [JinjaValue]
        if case let .list(items) = argument { args = items } else { args = [argument] }
        var out = ""
        var index = 0
        var chars = Array(format)[...]
        while let c = chars.first {
            chars = chars.dropFirst()
            guard c == "%" else { out.append(c); continue }
            guard let spec = chars.first else { throw TemplateError("incomplete format") }
            chars = chars.dropFirst()
            if spec == "%" { out.append("%"); continue }
            guard index < args.count else { throw TemplateError("not enough arguments for format string") }
            let arg = args[index]
            index += 1
            switch spec {
            case "s": out += arg.printed
            case "r": out += arg.repr
            case "d", "i": out += String(Int(arg.number ?? 0))
            case "f": out += String(format: "%f", arg.number ?? 0)
            default: throw TemplateError("unsupported format character '\(spec)'")
            }
        }
        return out
    }

    /// `"{} {}".format(a, b)` for positional `{}` / `{0}` fields.
    static func braceFormat(_ format: String, _ args: [JinjaValue]) throws -> String {
        var out = ""
        var auto = 0
        var chars = Array(format)[...]
        while let c = chars.first {
            chars = chars.dropFirst()
            if c == "{" {
                if chars.first == "{" { chars = chars.dropFirst(); out.append("{"); continue }
                var field = ""
                while let d = chars.first, d != "}" { field.append(d); chars = chars.dropFirst() }
                chars = chars.dropFirst()
                let i = Int(field) ?? auto
                auto += 1
                guard i < args.count else { throw TemplateError("format: index \(i) out of range") }
                out += args[i].printed
            } else if c == "}" && chars.first == "}" {
                chars = chars.dropFirst()
                out.append("}")
            } else {
                out.append(c)
            }
        }
        return out
    }
}
