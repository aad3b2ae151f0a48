/// Limits the tokens a decoder may pick, one step at a time (constrained decoding).
public protocol TokenConstraint: AnyObject, Sendable {
    /// Sets the logits of tokens that may not come next to −∞. `remaining`: tokens the sequence
    /// may still produce, this one included.
    func mask(_ logits: inout [Float], remaining: Int)
    /// Takes the picked token.
    func accept(_ token: Int)
    /// True once the output is complete: the sequence ends.
    var isComplete: Bool { get }
}

/// A tokenizer's vocabulary as bytes, arranged for constrained decoding: a trie of every token's
/// bytes (so tokens sharing a prefix are checked once), and apart from it the tokens that are
/// plain string content (no `"`, `\` or control byte), which any open string accepts. Built once
/// per tokenizer and shared by every sequence.
public final class TokenVocabulary: Sendable {
    struct Node: Sendable {
        /// Sorted by byte.
        var children: [(byte: UInt8, node: Int32)] = []
        var tokens: [Int32] = []

        func child(_ byte: UInt8) -> Int? {
            var low = 0, high = children.count
            while low < high {
                let middle = (low + high) / 2
                if children[middle].byte < byte { low = middle + 1 } else { high = middle }
            }
            return low < children.count && children[low].byte == byte ? Int(children[low].node) : nil
        }
    }

    let nodes: [Node]
    /// The trie of the tokens that are not plain string content.
    let structuralNodes: [Node]
    /// Tokens of plain string content, and how many characters each starts.
    let plainTokens: [Int32]
    /// The bytes of every token (nil: special or unknown).
    let bytes: [[UInt8]?]
    /// Tokens that end a sequence (EOS, end of turn).
    public let stopTokens: Set<Int>

    public init(tokenizer: Tokenizer, vocabularySize: Int, stopTokens: Set<Int>) {
        var bytes: [[UInt8]?] = []
        bytes.reserveCapacity(vocabularySize)
        for id in 0..<vocabularySize { bytes.append(stopTokens.contains(id) ? nil : tokenizer.tokenBytes(id).flatMap { $0.isEmpty ? nil : $0 }) }
        self.bytes = bytes
        self.stopTokens = stopTokens
        func isPlain(_ token: [UInt8]) -> Bool {
            !token.contains { $0 < 0x20 || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") } && String(validating: token, as: UTF8.self) != nil
        }
        nodes = Self.trie(bytes.enumerated().compactMap { id, token in token.map { (id, $0) } })
        structuralNodes = Self.trie(bytes.enumerated().compactMap { id, token in token.flatMap { isPlain($0) ? nil : (id, $0) } })
        plainTokens = bytes.enumerated().compactMap { id, token in token.flatMap { isPlain($0) ? Int32(id) : nil } }
    }

    /// The fewest tokens whose bytes spell `bytes` exactly (nil if none do).
    public func fewestTokens(spelling bytes: [UInt8]) -> Int? {
        var best = [Int](repeating: .max, count: bytes.count + 1)
        best[0] = 0
        for start in 0..<bytes.count where best[start] != .max {
            var node = 0
            for end in start..<bytes.count {
                guard let child = nodes[node].child(bytes[end]) else { break }
                node = child
                if !nodes[node].tokens.isEmpty { best[end + 1] = min(best[end + 1], best[start] + 1) }
            }
        }
        return best[bytes.count] == .max ? nil : best[bytes.count]
    }

    private static func trie(_ tokens: [(Int, [UInt8])]) -> [Node] {
        var nodes = [Node()]
        for (id, token) in tokens {
            var current = 0
            for byte in token {
                if let child = nodes[current].child(byte) {
                    current = child
                } else {
                    nodes.append(Node())
                    let place = nodes[current].children.firstIndex { $0.byte > byte } ?? nodes[current].children.count
                    nodes[current].children.insert((byte, Int32(nodes.count - 1)), at: place)
                    current = nodes.count - 1
                }
            }
            nodes[current].tokens.append(Int32(id))
        }
        return nodes
    }
}

/// Keeps a sequence's output a prefix of a document valid for a JSON schema, and makes sure it
/// completes within the token budget: while there is room, any token that keeps the prefix
/// valid; once the shortest completion would no longer fit in what is left, only tokens that
/// keep it fitting. Tokens are checked by walking the vocabulary trie with the matcher (a plain
/// token inside an open string is taken without a walk).
public final class JSONTokenConstraint: TokenConstraint, @unchecked Sendable {
    private let vocabulary: TokenVocabulary
    private var matcher: JSONMatcher
    /// Checking each candidate's completion costs a walk per token: done only when the budget is
    /// within this many tokens of the shortest completion.
    private let margin: Int

    public init(schema: JSONSchemaNode, vocabulary: TokenVocabulary) {
        self.vocabulary = vocabulary
        matcher = JSONMatcher(schema)
        margin = 16 + JSONMatcher.shortest(schema).count
    }

    public var isComplete: Bool { matcher.isComplete }

    /// The text read so far is a prefix of a valid document; this is what completes it shortest.
    public var completion: [UInt8] { matcher.completion }

    /// The fewest tokens that complete the document from here.
    public var tokensToComplete: Int { vocabulary.fewestTokens(spelling: matcher.completion) ?? matcher.completion.count }

    public func accept(_ token: Int) {
        guard token >= 0, token < vocabulary.bytes.count, let bytes = vocabulary.bytes[token] else { return }
        _ = matcher.feed(bytes)
    }

    public func mask(_ logits: inout [Float], remaining: Int) {
        let allowed = allowedTokens(remaining: remaining)
        var keep = [Bool](repeating: false, count: logits.count)
        for token in allowed where token < keep.count { keep[token] = true }
        for index in logits.indices where !keep[index] { logits[index] = -.infinity }
    }

    /// The tokens that may come next with `remaining` tokens left (this one included).
    public func allowedTokens(remaining: Int) -> [Int] {
        if matcher.isComplete { return Array(vocabulary.stopTokens) }
        let needed = tokensToComplete
        // Far from the end of the budget any valid token will do; near it, a token must leave a
        // completion that fits in what remains after it.
        let budget = needed + margin < remaining ? nil : remaining - 1
        var allowed: [Int] = []
        if case let .string(string)? = matcher.stack.last, string.acceptsPlainContent, needed <= remaining - 1 {
            // Plain content never lengthens the completion (it only meets a minimum length), so it
            // fits whenever the completion fits beside one more token.
            allowed = vocabulary.plainTokens.map(Int.init)
            walk(vocabulary.structuralNodes, from: 0, matcher, into: &allowed, budget: budget)
        } else {
            walk(vocabulary.nodes, from: 0, matcher, into: &allowed, budget: budget)
        }
        return allowed
    }

    /// Collects the tokens under `node` whose bytes `state` accepts (and, with a budget, whose
    /// completion then fits in it), in depth-first order.
    private func walk(_ nodes: [TokenVocabulary.Node], from node: Int, _ state: JSONMatcher, into allowed: inout [Int], budget: Int?) {
        if node != 0 && !nodes[node].tokens.isEmpty {
            if let budget {
                let completion = state.completion
                if completion.isEmpty || (vocabulary.fewestTokens(spelling: completion) ?? .max) <= budget {
                    allowed.append(contentsOf: nodes[node].tokens.map(Int.init))
                }
            } else {
                allowed.append(contentsOf: nodes[node].tokens.map(Int.init))
            }
        }
        for child in nodes[node].children {
            var next = state
            if next.feed(child.byte) { walk(nodes, from: Int(child.node), next, into: &allowed, budget: budget) }
        }
    }
}
