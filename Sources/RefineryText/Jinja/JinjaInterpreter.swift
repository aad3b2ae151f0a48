import Foundation

/// Evaluates a parsed template against a context.
final class JinjaInterpreter {
    private var frames: [[String: JinjaValue]]
    private var output = ""

    enum Flow { case normal, breakLoop, continueLoop }

    init(globals: [String: JinjaValue]) {
        frames = [globals]
    }

    func render(_ nodes: [Node]) throws -> String {
        output = ""
        _ = try run(nodes)
        return output
    }

    // MARK: Scopes

    func lookup(_ name: String) -> JinjaValue {
        for frame in frames.reversed() { if let value = frame[name] { return value } }
        return .undefined(name)
    }

    func assign(_ name: String, _ value: JinjaValue) { frames[frames.count - 1][name] = value }

    // MARK: Statements

    private func run(_ nodes: [Node]) throws -> Flow {
        for node in nodes {
            let flow = try run(node)
            if flow != .normal { return flow }
        }
        return .normal
    }

    private func run(_ node: Node) throws -> Flow {
        switch node {
        case let .text(text):
            output += text
        case let .output(expr, line):
            do { output += try evaluate(expr).printed } catch let error as TemplateError where !error.raisedByTemplate && !error.message.hasPrefix("line ") {
                throw TemplateError(error.message, line: line)
            }
        case let .ifChain(branches, otherwise):
            for (condition, body) in branches where try evaluate(condition).truthy {
                return try run(body)
            }
            return try run(otherwise)
        case let .forLoop(targets, iterableExpr, filter, body, otherwise, line):
            return try runFor(targets: targets, iterableExpr: iterableExpr, filter: filter, body: body, otherwise: otherwise, line: line)
        case let .set(target, valueExpr):
            let value = try evaluate(valueExpr)
            switch target {
            case let .names(names):
                if names.count == 1 {
                    assign(names[0], value)
                } else {
                    let items = try value.iterate()
                    guard items.count == names.count else {
                        throw TemplateError("cannot unpack \(items.count) values into \(names.count) names")
                    }
                    for (name, item) in zip(names, items) { assign(name, item) }
                }
            case let .attribute(object, attribute):
                guard case let .namespace(box) = lookup(object) else {
                    throw TemplateError("cannot assign attribute '\(attribute)' on '\(object)': only namespace() objects are mutable")
                }
                box.values[.string(attribute)] = value
            }
        case let .setBlock(name, body):
            let saved = output
            output = ""
            _ = try run(body)
            let captured = output
            output = saved
            assign(name, .string(captured))
        case let .macro(name, parameters, body):
            let captured = frames
            assign(name, .function(JinjaFunction(name: name) { [unowned self] args, kwargs in
                var frame: [String: JinjaValue] = [:]
                for (i, parameter) in parameters.enumerated() {
                    if i < args.count { frame[parameter.0] = args[i] }
                    else if let kw = kwargs.first(where: { $0.0 == parameter.0 }) { frame[parameter.0] = kw.1 }
                    else if let defaultExpr = parameter.1 { frame[parameter.0] = try self.evaluate(defaultExpr) }
                    else { frame[parameter.0] = .undefined(parameter.0) }
                }
                let savedFrames = self.frames
                let savedOutput = self.output
                self.frames = captured + [frame]
                self.output = ""
                defer { self.frames = savedFrames }
                _ = try self.run(body)
                let result = self.output
                self.output = savedOutput
                return .string(result)
            }))
        case let .callBlock(expr):
            _ = try evaluate(expr)
        case let .filterBlock(name, args, body):
            let saved = output
            output = ""
            _ = try run(body)
            let captured = output
            output = saved
            output += try applyFilter(name, to: .string(captured), args: try args.map { try evaluate($0) }, kwargs: []).printed
        case .breakLoop: return .breakLoop
        case .continueLoop: return .continueLoop
        }
        return .normal
    }

    private func runFor(targets: [String], iterableExpr: Expr, filter: Expr?, body: [Node], otherwise: [Node], line: Int) throws -> Flow {
        let iterable = try evaluate(iterableExpr)
        var items: [JinjaValue]
        do { items = try iterable.iterate() } catch let error as TemplateError { throw TemplateError(error.message, line: line) }
        frames.append([:])
        defer { frames.removeLast() }
        if let filter {
            var kept: [JinjaValue] = []
            for item in items {
                bind(targets, item)
                if try evaluate(filter).truthy { kept.append(item) }
            }
            items = kept
        }
        if items.isEmpty {
            frames[frames.count - 1] = [:]
            return try run(otherwise) == .breakLoop ? .normal : .normal
        }
        for (index, item) in items.enumerated() {
            frames[frames.count - 1] = [:]
            bind(targets, item)
            var loop = JinjaDict()
            loop[.string("index")] = .int(index + 1)
            loop[.string("index0")] = .int(index)
            loop[.string("revindex")] = .int(items.count - index)
            loop[.string("revindex0")] = .int(items.count - index - 1)
            loop[.string("first")] = .bool(index == 0)
            loop[.string("last")] = .bool(index == items.count - 1)
            loop[.string("length")] = .int(items.count)
            loop[.string("depth")] = .int(1)
            loop[.string("depth0")] = .int(0)
            loop[.string("previtem")] = index > 0 ? items[index - 1] : .undefined("previtem")
            loop[.string("nextitem")] = index + 1 < items.count ? items[index + 1] : .undefined("nextitem")
            let cycleIndex = index
            loop[.string("cycle")] = .function(JinjaFunction(name: "cycle") { args, _ in
                args.isEmpty ? .none : args[cycleIndex % args.count]
            })
            assign("loop", .dict(loop))
            let flow = try run(body)
            if flow == .breakLoop { break }
        }
        return .normal
    }

    private func bind(_ targets: [String], _ item: JinjaValue) {
        if targets.count == 1 {
            assign(targets[0], item)
        } else {
            let parts = (try? item.iterate()) ?? []
            for (i, name) in targets.enumerated() { assign(name, i < parts.count ? parts[i] : .undefined(name)) }
        }
    }

    // MARK: Expressions

    func evaluate(_ expr: Expr) throws -> JinjaValue {
        switch expr {
        case let .literal(value): return value
        case let .name(name): return lookup(name)
        case let .list(items): return .list(try items.map { try evaluate($0) })
        case let .dict(pairs):
            var dict = JinjaDict()
            for (k, v) in pairs { dict[try evaluate(k)] = try evaluate(v) }
            return .dict(dict)
        case let .member(base, name):
            return try member(try evaluate(base), name)
        case let .index(base, indexExpr):
            return try subscriptValue(try evaluate(base), try evaluate(indexExpr))
        case let .slice(base, start, stop, step):
            return try slice(try evaluate(base), start: try start.map { try evaluate($0) }, stop: try stop.map { try evaluate($0) },
                             step: try step.map { try evaluate($0) })
        case let .call(callee, args, kwargs):
            let function = try evaluate(callee)
            guard case let .function(f) = function else {
                if case let .undefined(name) = function { throw TemplateError("'\(name)' is undefined") }
                throw TemplateError("'\(function.typeName)' object is not callable")
            }
            return try f.call(try args.map { try evaluate($0) }, try kwargs.map { ($0.0, try evaluate($0.1)) })
        case let .filter(base, name, args, kwargs):
            return try applyFilter(name, to: try evaluate(base), args: try args.map { try evaluate($0) },
                                   kwargs: try kwargs.map { ($0.0, try evaluate($0.1)) })
        case let .test(base, name, args, negated):
            let result = try applyTest(name, try evaluate(base), args: try args.map { try evaluate($0) })
            return .bool(negated ? !result : result)
        case let .unary(op, operandExpr):
            let operand = try evaluate(operandExpr)
            if op == "not" { return .bool(!operand.truthy) }
            switch operand {
            case let .int(i): return .int(-i)
            case let .double(d): return .double(-d)
            case let .bool(b): return .int(b ? -1 : 0)
            default: throw TemplateError("bad operand type for unary -: '\(operand.typeName)'")
            }
        case let .binary(op, leftExpr, rightExpr):
            if op == "and" {
                let left = try evaluate(leftExpr)
                return left.truthy ? try evaluate(rightExpr) : left
            }
            if op == "or" {
                let left = try evaluate(leftExpr)
                return left.truthy ? left : try evaluate(rightExpr)
            }
            return try JinjaOperators.binary(op, try evaluate(leftExpr), try evaluate(rightExpr))
        case let .conditional(value, condition, otherwise):
            if try evaluate(condition).truthy { return try evaluate(value) }
            return try otherwise.map { try evaluate($0) } ?? .undefined("else")
        }
    }

    func member(_ base: JinjaValue, _ name: String) throws -> JinjaValue {
        switch base {
        case let .undefined(baseName):
            throw TemplateError("'\(baseName)' is undefined")
        case let .dict(d):
            if let method = JinjaMethods.bound(base, name) { return method }
            return d[string: name] ?? .undefined(name)
        case let .namespace(box):
            return box.values[string: name] ?? .undefined(name)
        default:
            if let method = JinjaMethods.bound(base, name) { return method }
            return .undefined(name)
        }
    }

    func subscriptValue(_ base: JinjaValue, _ key: JinjaValue) throws -> JinjaValue {
        switch base {
        case let .undefined(name): throw TemplateError("'\(name)' is undefined")
        case let .list(items):
            guard case let .int(i) = key else { return .undefined("[\(key.repr)]") }
            let index = i < 0 ? items.count + i : i
            guard index >= 0 && index < items.count else { return .undefined("[\(i)]") }
            return items[index]
        case let .string(s):
            guard case let .int(i) = key else { return .undefined("[\(key.repr)]") }
            let chars = Array(s)
            let index = i < 0 ? chars.count + i : i
            guard index >= 0 && index < chars.count else { return .undefined("[\(i)]") }
            return .string(String(chars[index]))
        case let .dict(d):
            return d[key] ?? .undefined(key.printed)
        case let .namespace(box):
            return box.values[key] ?? .undefined(key.printed)
        default:
            if case let .string(name) = key { return try member(base, name) }
            return .undefined(key.printed)
        }
    }

    func slice(_ base: JinjaValue, start: JinjaValue?, stop: JinjaValue?, step: JinjaValue?) throws -> JinjaValue {
        func intOrNil(_ v: JinjaValue?) throws -> Int? {
            guard let v else { return nil }
            switch v {
            case .none, .undefined: return nil
            case let .int(i): return i
            default: throw TemplateError("slice indices must be integers or None")
            }
        }
        let stepValue = try intOrNil(step) ?? 1
        guard stepValue != 0 else { throw TemplateError("slice step cannot be zero") }
        func indices(count: Int) throws -> [Int] {
            var lower = try intOrNil(start)
            var upper = try intOrNil(stop)
            if stepValue > 0 {
                var s = lower ?? 0, e = upper ?? count
                if s < 0 { s = max(0, s + count) }; if e < 0 { e = max(0, e + count) }
                s = min(s, count); e = min(e, count)
                return s < e ? Array(stride(from: s, to: e, by: stepValue)) : []
            } else {
                if let l = lower, l < 0 { lower = l + count }
                if let u = upper, u < 0 { upper = u + count }
                let s = min(lower ?? (count - 1), count - 1)
                let e = upper ?? -1
                return s > e ? Array(stride(from: s, to: max(e, -1), by: stepValue)) : []
            }
        }
        switch base {
        case let .list(items): return .list(try indices(count: items.count).map { items[$0] })
        case let .string(s):
            let chars = Array(s)
            return .string(String(try indices(count: chars.count).map { chars[$0] }))
        case let .undefined(name): throw TemplateError("'\(name)' is undefined")
        default: throw TemplateError("'\(base.typeName)' object is not subscriptable")
        }
    }

    func applyFilter(_ name: String, to value: JinjaValue, args: [JinjaValue], kwargs: [(String, JinjaValue)]) throws -> JinjaValue {
        try JinjaFilters.apply(name, value, args: args, kwargs: kwargs, interpreter: self)
    }

    func applyTest(_ name: String, _ value: JinjaValue, args: [JinjaValue]) throws -> Bool {
        try JinjaFilters.test(name, value, args: args)
    }
}
