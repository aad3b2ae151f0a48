import Foundation

/// Python methods on strings and dicts that chat templates call (`.strip()`, `.items()` …).
enum JinjaMethods {
    static func bound(_ receiver: JinjaValue, _ name: String) -> JinjaValue? {
        switch receiver {
        case let .string(s): return stringMethod(s, name)
        case let .dict(d): return dictMethod(d, name)
        case let .list(l): return listMethod(l, name)
        default: return nil
        }
    }

    static func stripSet(_ args: [JinjaValue]) -> Set<Character>? {
        if let first = args.first, case let .string(chars) = first { return Set(chars) }
        return nil
    }

    static func stringMethod(_ s: String, _ name: String) -> JinjaValue? {
        func method(_ body: @escaping ([JinjaValue], [(String, JinjaValue)]) throws -> JinjaValue) -> JinjaValue {
            .function(JinjaFunction(name: name, call: body))
        }
        switch name {
        case "strip", "lstrip", "rstrip":
            return method { args, _ in
                let set = stripSet(args)
                let isStripped: (Character) -> Bool = { c in set.map { $0.contains(c) } ?? c.isWhitespace }
                var chars = Substring(s)
                if name != "rstrip" { while let f = chars.first, isStripped(f) { chars.removeFirst() } }
                if name != "lstrip" { while let l = chars.last, isStripped(l) { chars.removeLast() } }
                return .string(String(chars))
            }
        case "upper": return method { _, _ in .string(s.uppercased()) }
        case "lower": return method { _, _ in .string(s.lowercased()) }
        case "title": return method { _, _ in .string(JinjaFilters.title(s)) }
        case "capitalize": return method { _, _ in .string(JinjaFilters.capitalize(s)) }
        case "startswith", "endswith":
            return method { args, _ in
                var candidates: [String] = []
                if case let .string(p)? = args.first { candidates = [p] }
                if case let .list(items)? = args.first { candidates = items.compactMap { if case let .string(p) = $0 { return p } else { return nil } } }
                return .bool(candidates.contains { name == "startswith" ? s.hasPrefix($0) : s.hasSuffix($0) })
            }
        case "split":
            return method { args, kwargs in
                let separator: String? = { if case let .string(sep)? = args.first { return sep } else { return nil } }()
                var maxSplit = -1
                if args.count > 1, case let .int(m) = args[1] { maxSplit = m }
                if let m = kwargs.first(where: { $0.0 == "maxsplit" }), case let .int(v) = m.1 { maxSplit = v }
                return .list(JinjaFilters.pythonSplit(s, separator: separator, maxSplit: maxSplit).map { .string($0) })
            }
        case "replace":
            return method { args, _ in
                guard args.count >= 2, case let .string(old) = args[0], case let .string(new) = args[1] else {
                    throw TemplateError("str.replace() takes two strings")
                }
                return .string(old.isEmpty ? s : s.replacingAll(old, with: new))
            }
        case "find":
            return method { args, _ in
                guard case let .string(needle)? = args.first else { throw TemplateError("str.find() takes a string") }
                guard let range = s.range(of: needle) else { return .int(-1) }
                return .int(s.distance(from: s.startIndex, to: range.lowerBound))
            }
        case "count":
            return method { args, _ in
                guard case let .string(needle)? = args.first, !needle.isEmpty else { return .int(s.count + 1) }
                return .int(s.components(separatedBy: needle).count - 1)
            }
        case "join":
            return method { args, _ in .string(try (args.first ?? .list([])).iterate().map(\.printed).joined(separator: s)) }
        case "format":
            return method { args, _ in .string(try JinjaFilters.braceFormat(s, args)) }
        case "isdigit": return method { _, _ in .bool(!s.isEmpty && s.allSatisfy { $0.isNumber }) }
        case "isspace": return method { _, _ in .bool(!s.isEmpty && s.allSatisfy { $0.isWhitespace }) }
        default: return nil
        }
    }

    static func dictMethod(_ d: JinjaDict, _ name: String) -> JinjaValue? {
        switch name {
        case "items": return .function(JinjaFunction(name: name) { _, _ in .list(d.pairs.map { .list([$0.0, $0.1]) }) })
        case "keys": return .function(JinjaFunction(name: name) { _, _ in .list(d.pairs.map { $0.0 }) })
        case "values": return .function(JinjaFunction(name: name) { _, _ in .list(d.pairs.map { $0.1 }) })
        case "get":
            return .function(JinjaFunction(name: name) { args, _ in
                guard let key = args.first else { throw TemplateError("dict.get() needs a key") }
                return d[key] ?? (args.count > 1 ? args[1] : .none)
            })
        default: return nil
        }
    }

    static func listMethod(_ l: [JinjaValue], _ name: String) -> JinjaValue? {
        switch name {
        case "index":
            return .function(JinjaFunction(name: name) { args, _ in
                guard let item = args.first, let i = l.firstIndex(where: { JinjaValue.equal($0, item) }) else {
                    throw TemplateError("list.index(x): x not in list")
                }
                return .int(i)
            })
        case "count":
            return .function(JinjaFunction(name: name) { args, _ in
                guard let item = args.first else { return .int(0) }
                return .int(l.filter { JinjaValue.equal($0, item) }.count)
            })
        default: return nil
        }
    }
}
