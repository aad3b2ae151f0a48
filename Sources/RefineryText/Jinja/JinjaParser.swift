/// Parses lexer pieces into a tree of `Node`s.
struct JinjaParser {
    private var pieces: [JinjaLexer.Piece]
    private var position = 0

    init(pieces: [JinjaLexer.Piece]) { self.pieces = pieces }

    /// Parses the whole template.
    mutating func parseTemplate() throws -> [Node] {
        let (nodes, end) = try parseBody(until: [])
        if let end { throw TemplateError("unexpected {% \(end.0) %}", line: end.1) }
        return nodes
    }

    /// Parses nodes until a statement whose first word is in `terminators`; returns that
    /// statement's tokens (consumed) and line.
    private mutating func parseBody(until terminators: Set<String>) throws -> ([Node], (String, Int, [JinjaToken])?) {
        var nodes: [Node] = []
        while position < pieces.count {
            let piece = pieces[position]
            position += 1
            switch piece {
            case let .text(text):
                nodes.append(.text(text))
            case let .output(tokens, line):
                var stream = TokenStream(tokens: tokens, line: line)
                let expr = try stream.parseExpression()
                try stream.expectEnd()
                nodes.append(.output(expr, line: line))
            case let .statement(tokens, line):
                guard case let .name(keyword)? = tokens.first?.kind else {
                    throw TemplateError("empty or invalid statement", line: line)
                }
                if terminators.contains(keyword) { return (nodes, (keyword, line, tokens)) }
                nodes.append(try parseStatement(keyword: keyword, tokens: tokens, line: line))
            }
        }
        if !terminators.isEmpty {
            throw TemplateError("missing {% \(terminators.sorted().joined(separator: " / ")) %} at end of template")
        }
        return (nodes, nil)
    }

    private mutating func parseStatement(keyword: String, tokens: [JinjaToken], line: Int) throws -> Node {
        var stream = TokenStream(tokens: Array(tokens.dropFirst()), line: line)
        switch keyword {
        case "if":
            var branches: [(Expr, [Node])] = []
            var condition = try stream.parseExpression()
            try stream.expectEnd()
            var otherwise: [Node] = []
            while true {
                let (body, end) = try parseBody(until: ["elif", "else", "endif"])
                branches.append((condition, body))
                guard let end else { break }
                if end.0 == "elif" {
                    var s = TokenStream(tokens: Array(end.2.dropFirst()), line: end.1)
                    condition = try s.parseExpression()
                    try s.expectEnd()
                    continue
                }
                if end.0 == "else" {
                    let (elseBody, _) = try parseBody(until: ["endif"])
                    otherwise = elseBody
                }
                break
            }
            return .ifChain(branches, otherwise: otherwise)
        case "for":
            var targets: [String] = [try stream.expectName()]
            while stream.consumeOp(",") { targets.append(try stream.expectName()) }
            try stream.expectKeyword("in")
            let iterable = try stream.parseExpression(allowConditional: false)
            var filter: Expr? = nil
            if stream.consumeKeyword("if") { filter = try stream.parseExpression(allowConditional: false) }
            _ = stream.consumeKeyword("recursive")
            try stream.expectEnd()
            let (body, end) = try parseBody(until: ["else", "endfor"])
            var otherwise: [Node] = []
            if end?.0 == "else" { otherwise = try parseBody(until: ["endfor"]).0 }
            return .forLoop(targets: targets, iterable: iterable, filter: filter, body: body, otherwise: otherwise, line: line)
        case "set":
            let first = try stream.expectName()
            if stream.consumeOp(".") {
                let attribute = try stream.expectName()
                try stream.expectOp("=")
                let value = try stream.parseExpression()
                try stream.expectEnd()
                return .set(target: .attribute(object: first, attribute: attribute), value: value)
            }
            var names = [first]
            while stream.consumeOp(",") { names.append(try stream.expectName()) }
            if stream.atEnd {
                let (body, _) = try parseBody(until: ["endset"])
                return .setBlock(name: first, body: body)
            }
            try stream.expectOp("=")
            let value = try stream.parseExpression()
            try stream.expectEnd()
            return .set(target: .names(names), value: value)
        case "macro":
            let name = try stream.expectName()
            try stream.expectOp("(")
            var parameters: [(String, Expr?)] = []
            while !stream.consumeOp(")") {
                let parameter = try stream.expectName()
                var defaultValue: Expr? = nil
                if stream.consumeOp("=") { defaultValue = try stream.parseExpression() }
                parameters.append((parameter, defaultValue))
                if !stream.consumeOp(",") { try stream.expectOp(")"); break }
            }
            try stream.expectEnd()
            let (body, _) = try parseBody(until: ["endmacro"])
            return .macro(name: name, parameters: parameters, body: body)
        case "filter":
            let name = try stream.expectName()
            var args: [Expr] = []
            if stream.consumeOp("(") {
                while !stream.consumeOp(")") {
                    args.append(try stream.parseExpression())
                    if !stream.consumeOp(",") { try stream.expectOp(")"); break }
                }
            }
            let (body, _) = try parseBody(until: ["endfilter"])
            return .filterBlock(name: name, args: args, body: body)
        case "generation":
            // transformers' {% generation %} marks assistant text; it renders its body unchanged.
            let (body, _) = try parseBody(until: ["endgeneration"])
            return .ifChain([(.literal(.bool(true)), body)], otherwise: [])
        case "break": return .breakLoop
        case "continue": return .continueLoop
        case "do":
            let expr = try stream.parseExpression()
            return .callBlock(expr)
        default:
            throw TemplateError("unknown statement {% \(keyword) %}", line: line)
        }
    }
}

/// A cursor over the tokens of one tag, with the expression grammar.
struct TokenStream {
    let tokens: [JinjaToken]
    var index = 0
    let line: Int

    init(tokens: [JinjaToken], line: Int) {
        self.tokens = tokens
        self.line = line
    }

    var atEnd: Bool { index >= tokens.count }
    var current: JinjaToken.Kind? { index < tokens.count ? tokens[index].kind : nil }
    var currentLine: Int { index < tokens.count ? tokens[index].line : line }

    func error(_ message: String) -> TemplateError { TemplateError(message, line: currentLine) }

    mutating func expectEnd() throws {
        if !atEnd { throw error("unexpected \(describe(tokens[index].kind)) in tag") }
    }

    func describe(_ kind: JinjaToken.Kind) -> String {
        switch kind {
        case let .name(n): return "'\(n)'"
        case let .op(o): return "'\(o)'"
        case let .string(s): return "string '\(s)'"
        case let .int(i): return "\(i)"
        case let .double(d): return "\(d)"
        }
    }

    mutating func consumeOp(_ op: String) -> Bool {
        if case .op(op)? = current { index += 1; return true }
        return false
    }

    mutating func expectOp(_ op: String) throws {
        if !consumeOp(op) { throw error("expected '\(op)'" + (atEnd ? " before end of tag" : ", found \(describe(tokens[index].kind))")) }
    }

    mutating func consumeKeyword(_ word: String) -> Bool {
        if case .name(word)? = current { index += 1; return true }
        return false
    }

    mutating func expectKeyword(_ word: String) throws {
        if !consumeKeyword(word) { throw error("expected '\(word)'") }
    }

    mutating func expectName() throws -> String {
        if case let .name(n)? = current { index += 1; return n }
        throw error("expected a name")
    }

    func peekKeyword(_ word: String, offset: Int = 0) -> Bool {
        let i = index + offset
        if i < tokens.count, case .name(word) = tokens[i].kind { return true }
        return false
    }

    // MARK: Expressions (Jinja's precedence)

    mutating func parseExpression(allowConditional: Bool = true) throws -> Expr {
        let expr = try parseOr()
        if allowConditional && consumeKeyword("if") {
            let condition = try parseOr()
            var otherwise: Expr? = nil
            if consumeKeyword("else") { otherwise = try parseExpression() }
            return .conditional(expr, condition: condition, otherwise: otherwise)
        }
        return expr
    }

    mutating func parseOr() throws -> Expr {
        var left = try parseAnd()
        while consumeKeyword("or") { left = .binary("or", left, try parseAnd()) }
        return left
    }

    mutating func parseAnd() throws -> Expr {
        var left = try parseNot()
        while consumeKeyword("and") { left = .binary("and", left, try parseNot()) }
        return left
    }

    mutating func parseNot() throws -> Expr {
        if consumeKeyword("not") { return .unary("not", try parseNot()) }
        return try parseCompare()
    }

    mutating func parseCompare() throws -> Expr {
        var left = try parseMath1()
        while true {
            if case let .op(op)? = current, ["==", "!=", "<", ">", "<=", ">="].contains(op) {
                index += 1
                left = .binary(op, left, try parseMath1())
            } else if consumeKeyword("in") {
                left = .binary("in", left, try parseMath1())
            } else if peekKeyword("not") && peekKeyword("in", offset: 1) {
                index += 2
                left = .binary("not in", left, try parseMath1())
            } else {
                return left
            }
        }
    }

    mutating func parseMath1() throws -> Expr {
        var left = try parseConcat()
        while case let .op(op)? = current, op == "+" || op == "-" {
            index += 1
            left = .binary(op, left, try parseConcat())
        }
        return left
    }

    mutating func parseConcat() throws -> Expr {
        var left = try parseMath2()
        while consumeOp("~") { left = .binary("~", left, try parseMath2()) }
        return left
    }

    mutating func parseMath2() throws -> Expr {
        var left = try parsePow()
        while case let .op(op)? = current, ["*", "/", "//", "%"].contains(op) {
            index += 1
            left = .binary(op, left, try parsePow())
        }
        return left
    }

    mutating func parsePow() throws -> Expr {
        var left = try parseUnary()
        while consumeOp("**") { left = .binary("**", left, try parseUnary()) }
        return left
    }

    mutating func parseUnary(withFilter: Bool = true) throws -> Expr {
        var node: Expr
        if consumeOp("-") {
            node = .unary("-", try parseUnary(withFilter: false))
        } else if consumeOp("+") {
            node = try parseUnary(withFilter: false)
        } else {
            node = try parsePostfix(try parsePrimary())
        }
        if withFilter { node = try parseFilterExpression(node) }
        return node
    }

    mutating func parsePrimary() throws -> Expr {
        guard let kind = current else { throw error("expression expected before end of tag") }
        index += 1
        switch kind {
        case let .string(s):
            var text = s
            while case let .string(more)? = current { text += more; index += 1 }  // adjacent literals concatenate
            return .literal(.string(text))
        case let .int(i): return .literal(.int(i))
        case let .double(d): return .literal(.double(d))
        case let .name(n):
            switch n {
            case "true", "True": return .literal(.bool(true))
            case "false", "False": return .literal(.bool(false))
            case "none", "None": return .literal(.none)
            default: return .name(n)
            }
        case .op("("):
            if consumeOp(")") { return .list([]) }
            let first = try parseExpression()
            if consumeOp(",") {
                var items = [first]
                while !consumeOp(")") {
                    items.append(try parseExpression())
                    if !consumeOp(",") { try expectOp(")"); break }
                }
                return .list(items)
            }
            try expectOp(")")
            return first
        case .op("["):
            var items: [Expr] = []
            while !consumeOp("]") {
                items.append(try parseExpression())
                if !consumeOp(",") { try expectOp("]"); break }
            }
            return .list(items)
        case .op("{"):
            var pairs: [(Expr, Expr)] = []
            while !consumeOp("}") {
                let key = try parseExpression()
                try expectOp(":")
                pairs.append((key, try parseExpression()))
                if !consumeOp(",") { try expectOp("}"); break }
            }
            return .dict(pairs)
        default:
            throw TemplateError("unexpected \(describe(kind)) in expression", line: tokens[index - 1].line)
        }
    }

    mutating func parsePostfix(_ base: Expr) throws -> Expr {
        var node = base
        while true {
            if consumeOp(".") {
                if case let .int(i)? = current { index += 1; node = .index(node, .literal(.int(i))); continue }
                node = .member(node, try expectName())
            } else if consumeOp("[") {
                node = try parseSubscript(node)
            } else if case .op("(")? = current {
                node = try parseCall(node)
            } else {
                return node
            }
        }
    }

    mutating func parseSubscript(_ base: Expr) throws -> Expr {
        var start: Expr? = nil, stop: Expr? = nil, step: Expr? = nil
        if case .op(":")? = current {} else { start = try parseExpression() }
        if consumeOp("]") {
            guard let start else { throw error("empty subscript") }
            return .index(base, start)
        }
        try expectOp(":")
        if case .op(let op)? = current, op == ":" || op == "]" {} else { stop = try parseExpression() }
        if consumeOp(":") {
            if case .op("]")? = current {} else { step = try parseExpression() }
        }
        try expectOp("]")
        return .slice(base, start: start, stop: stop, step: step)
    }

    mutating func parseArguments() throws -> ([Expr], [(String, Expr)]) {
        try expectOp("(")
        var args: [Expr] = []
        var kwargs: [(String, Expr)] = []
        while !consumeOp(")") {
            if case let .name(n)? = current, index + 1 < tokens.count, tokens[index + 1].kind == .op("=") {
                index += 2
                kwargs.append((n, try parseExpression()))
            } else {
                args.append(try parseExpression())
            }
            if !consumeOp(",") { try expectOp(")"); break }
        }
        return (args, kwargs)
    }

    mutating func parseCall(_ callee: Expr) throws -> Expr {
        let (args, kwargs) = try parseArguments()
        return .call(callee, args: args, kwargs: kwargs)
    }

    mutating func parseFilterExpression(_ base: Expr) throws -> Expr {
        var node = base
        while true {
            if consumeOp("|") {
                var name = try expectName()
                while consumeOp(".") { name += "." + (try expectName()) }
                var args: [Expr] = [], kwargs: [(String, Expr)] = []
                if case .op("(")? = current { (args, kwargs) = try parseArguments() }
                node = .filter(node, name: name, args: args, kwargs: kwargs)
            } else if consumeKeyword("is") {
                let negated = consumeKeyword("not")
                let name = try expectName()
                var args: [Expr] = []
                if case .op("(")? = current {
                    args = try parseArguments().0
                } else if let kind = current, startsTestArgument(kind) {
                    args = [try parsePrimaryWithPostfix()]
                }
                node = .test(node, name: name, args: args, negated: negated)
            } else if case .op("(")? = current {
                node = try parseCall(node)
            } else {
                return node
            }
        }
    }

    func startsTestArgument(_ kind: JinjaToken.Kind) -> Bool {
        switch kind {
        case .string, .int, .double: return true
        case let .name(n): return !["and", "or", "else", "if", "in", "not", "is"].contains(n)
        case .op("["), .op("{"): return true
        default: return false
        }
    }

    mutating func parsePrimaryWithPostfix() throws -> Expr { try parsePostfix(try parsePrimary()) }
}
