/// Which member of a group of duplicates stays.
public enum KeepRule: Sendable, Equatable {
    /// The earliest in the input.
    case first
    /// The one with the longest compared text (ties: the earliest).
    case longest
    /// The one with the highest score (samples without one rank last; ties: the earliest).
    case highestScore

    /// Parses `first`, `longest` or `score`.
    public init?(name: String) {
        switch name {
        case "first": self = .first
        case "longest": self = .longest
        case "score", "highest_score": self = .highestScore
        default: return nil
        }
    }
}

/// Groups of duplicates over `count` documents, built by union-find from matched pairs.
public struct DuplicateClusters: Sendable {
    private var parent: [Int]

    public init(count: Int) { parent = Array(0..<count) }

    /// The group's root of document `x` (path halving).
    public mutating func root(_ x: Int) -> Int {
        var x = x
        while parent[x] != x {
            parent[x] = parent[parent[x]]
            x = parent[x]
        }
        return x
    }

    /// Puts `a` and `b` in one group.
    public mutating func join(_ a: Int, _ b: Int) {
        let ra = root(a), rb = root(b)
        if ra != rb { parent[max(ra, rb)] = min(ra, rb) }
    }

    /// For each document, the member of its group that is kept (itself when it is kept).
    /// `lengths` and `scores` are read by the `longest` and `highestScore` rules.
    public mutating func keptMember(rule: KeepRule, lengths: [Int] = [], scores: [Double?] = []) -> [Int] {
        let count = parent.count
        var best: [Int: Int] = [:]
        func better(_ a: Int, than b: Int) -> Bool {
            switch rule {
            case .first: return a < b
            case .longest:
                let la = lengths.indices.contains(a) ? lengths[a] : 0, lb = lengths.indices.contains(b) ? lengths[b] : 0
                return la != lb ? la > lb : a < b
            case .highestScore:
                let sa = scores.indices.contains(a) ? scores[a] : nil, sb = scores.indices.contains(b) ? scores[b] : nil
                switch (sa, sb) {
                case let (x?, y?) where x != y: return x > y
                case (.some, nil): return true
                case (nil, .some): return false
                default: return a < b
                }
            }
        }
        var roots = [Int](repeating: 0, count: count)
        for index in 0..<count {
            let r = root(index)
            roots[index] = r
            if let current = best[r] {
                if better(index, than: current) { best[r] = index }
            } else {
                best[r] = index
            }
        }
        return roots.map { best[$0] ?? $0 }
    }
}
