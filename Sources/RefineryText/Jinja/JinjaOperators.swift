import Foundation

/// Binary operators with Python semantics.
enum JinjaOperators {
    static func binary(_ op: String, _ a: JinjaValue, _ b: JinjaValue) throws -> JinjaValue {
        switch op {
        case "==": return .bool(JinjaValue.equal(a, b))
        case "!=": return .bool(!JinjaValue.equal(a, b))
        case "<", ">", "<=", ">=": return .bool(try compare(op, a, b))
        case "in": return .bool(try contains(b, a))
        case "not in": return .bool(!(try contains(b, a)))
        case "~": return .string(a.printed + b.printed)
        case "+":
            switch (a, b) {
            case let (.string(x), .string(y)): return .string(x + y)
            case let (.list(x), .list(y)): return .list(x + y)
            default: return try arithmetic(op, a, b)
            }
        case "*":
            switch (a, b) {
            case let (.string(s), .int(n)), let (.int(n), .string(s)): return .string(String(repeating: s, count: max(0, n)))
            case let (.list(l), .int(n)), let (.int(n), .list(l)):
                return .list(Array((0..<max(0, n)).map { _ in l }.joined()))
            default: return try arithmetic(op, a, b)
            }
        case "%":
            if case let .string(format) = a { return .string(try JinjaFilters.percentFormat(format, b)) }
            return try arithmetic(op, a, b)
        default:
            return try arithmetic(op, a, b)
        }
    }

    static func arithmetic(_ op: String, _ a: JinjaValue, _ b: JinjaValue) throws -> JinjaValue {
        let bothInts: (Int, Int)?
        switch (a, b) {
        case let (.int(x), .int(y)): bothInts = (x, y)
        case let (.bool(x), .int(y)): bothInts = (x ? 1 : 0, y)
        case let (.int(x), .bool(y)): bothInts = (x, y ? 1 : 0)
        default: bothInts = nil
        }
        guard let x = a.number, let y = b.number else {
            if a.isUndefined || b.isUndefined {
                let name: String
                if case let .undefined(n) = a { name = n } else if case let .undefined(n) = b { name = n } else { name = "?" }
                throw TemplateError("'\(name)' is undefined")
            }
            throw TemplateError("unsupported operand type(s) for \(op): '\(a.typeName)' and '\(b.typeName)'")
        }
        switch op {
        case "+": if let (i, j) = bothInts { return .int(i &+ j) }; return .double(x + y)
        case "-": if let (i, j) = bothInts { return .int(i &- j) }; return .double(x - y)
        case "*": if let (i, j) = bothInts { return .int(i &* j) }; return .double(x * y)
        case "/":
            guard y != 0 else { throw TemplateError("division by zero") }
            return .double(x / y)
        case "//":
            guard y != 0 else { throw TemplateError("integer division or modulo by zero") }
            if let (i, j) = bothInts { return .int(Int((Double(i) / Double(j)).rounded(.down))) }
            return .double((x / y).rounded(.down))
        case "%":
            guard y != 0 else { throw TemplateError("integer division or modulo by zero") }
            if let (i, j) = bothInts { let r = i % j; return .int(r != 0 && (r < 0) != (j < 0) ? r + j : r) }
            let r = x.truncatingRemainder(dividingBy: y)
            return .double(r != 0 && (r < 0) != (y < 0) ? r + y : r)
        case "**":
            if let (i, j) = bothInts, j >= 0 {
                var result = 1
                for _ in 0..<j { result = result &* i }
                return .int(result)
            }
            return .double(pow(x, y))
        default:
            throw TemplateError("unknown operator \(op)")
        }
    }

    static func compare(_ op: String, _ a: JinjaValue, _ b: JinjaValue) throws -> Bool {
        let ordering: Int
        if let x = a.number, let y = b.number {
            ordering = x < y ? -1 : (x > y ? 1 : 0)
        } else if case let .string(x) = a, case let .string(y) = b {
            let xs = Array(x.unicodeScalars).map(\.value), ys = Array(y.unicodeScalars).map(\.value)
            ordering = xs.lexicographicallyPrecedes(ys) ? -1 : (xs == ys ? 0 : 1)
        } else if case let .list(x) = a, case let .list(y) = b {
            ordering = try compareLists(x, y)
        } else {
            throw TemplateError("'\(op)' not supported between instances of '\(a.typeName)' and '\(b.typeName)'")
        }
        switch op {
        case "<": return ordering < 0
        case ">": return ordering > 0
        case "<=": return ordering <= 0
        default: return ordering >= 0
        }
    }

    static func compareLists(_ x: [JinjaValue], _ y: [JinjaValue]) throws -> Int {
        for (a, b) in zip(x, y) where !JinjaValue.equal(a, b) {
            return try compare("<", a, b) ? -1 : 1
        }
        return x.count < y.count ? -1 : (x.count > y.count ? 1 : 0)
    }

    static func contains(_ container: JinjaValue, _ item: JinjaValue) throws -> Bool {
        switch container {
        case let .string(s):
            guard case let .string(needle) = item else { throw TemplateError("'in <string>' requires string as left operand, not \(item.typeName)") }
            return needle.isEmpty || s.contains(needle)
        case let .list(items): return items.contains { JinjaValue.equal($0, item) }
        case let .dict(d): return d[item] != nil
        case let .namespace(box): return box.values[item] != nil
        case .undefined, .none: return false
        default: throw TemplateError("argument of type '\(container.typeName)' is not iterable")
        }
    }
}
