/// Expressions of the Jinja subset that chat templates use.
indirect enum Expr {
    case literal(JinjaValue)
    case name(String)
    case list([Expr])
    case dict([(Expr, Expr)])
    case member(Expr, String)
    case index(Expr, Expr)
    case slice(Expr, start: Expr?, stop: Expr?, step: Expr?)
    case call(Expr, args: [Expr], kwargs: [(String, Expr)])
    case filter(Expr, name: String, args: [Expr], kwargs: [(String, Expr)])
    case test(Expr, name: String, args: [Expr], negated: Bool)
    case unary(String, Expr)
    case binary(String, Expr, Expr)
    case conditional(Expr, condition: Expr, otherwise: Expr?)
}

/// Statements (the body of a template is a list of them).
indirect enum Node {
    case text(String)
    case output(Expr, line: Int)
    case ifChain([(Expr, [Node])], otherwise: [Node])
    case forLoop(targets: [String], iterable: Expr, filter: Expr?, body: [Node], otherwise: [Node], line: Int)
    case set(target: SetTarget, value: Expr)
    case setBlock(name: String, body: [Node])
    case macro(name: String, parameters: [(String, Expr?)], body: [Node])
    case callBlock(Expr)
    case filterBlock(name: String, args: [Expr], body: [Node])
    case breakLoop
    case continueLoop
}

enum SetTarget {
    case names([String])
    case attribute(object: String, attribute: String)
}
