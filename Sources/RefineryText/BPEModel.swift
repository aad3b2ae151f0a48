import RefineryCore
/// A piece of a word on its way through BPE: a token id and the original-text range it covers.
struct Symbol {
    var id: Int
    var start: Int
    var end: Int
}

/// The `model` section of `tokenizer.json` for `"type": "BPE"`.
struct BPEModel: Sendable {
    let vocab: [String: Int]
    let idToToken: [String]
    /// (left id, right id) → (rank, merged id)
    let merges: [UInt64: (rank: Int, id: Int)]
    let unkID: Int?
    let byteFallback: Bool
    let fuseUnk: Bool
    let ignoreMerges: Bool
    /// `<0xXX>` ids when byte fallback is on.
    let byteTokenIDs: [Int]?

    init(json: JSONValue) throws {
        guard let vocabPairs = json["vocab"]?.objectValue else {
            throw TextError("tokenizer.json: the BPE model has no \"vocab\" object")
        }
        var vocab: [String: Int] = [:]
        vocab.reserveCapacity(vocabPairs.count)
        var maxID = -1
        for (token, value) in vocabPairs {
            guard let id = value.intValue, id >= 0 else {
                throw TextError("tokenizer.json: vocab entry \"\(token)\" has no valid id")
            }
            vocab[token] = id
            maxID = max(maxID, id)
        }
        var idToToken = [String](repeating: "", count: maxID + 1)
        for (token, id) in vocab { idToToken[id] = token }
        var merges: [UInt64: (Int, Int)] = [:]
        for (rank, entry) in (json["merges"]?.arrayValue ?? []).enumerated() {
            let left: String, right: String
            if let text = entry.stringValue {
                guard let space = text.firstIndex(of: " ") else {
                    throw TextError("tokenizer.json: merge #\(rank) \"\(text)\" is not two tokens separated by a space")
                }
                left = String(text[..<space])
                right = String(text[text.index(after: space)...])
            } else if let pair = entry.arrayValue, pair.count == 2, let a = pair[0].stringValue, let b = pair[1].stringValue {
                left = a; right = b
            } else {
                throw TextError("tokenizer.json: merge #\(rank) is neither \"a b\" nor [\"a\", \"b\"]")
            }
            guard let a = vocab[left], let b = vocab[right], let merged = vocab[left + right] else {
                throw TextError("tokenizer.json: merge #\(rank) (\(left) \(right)) uses tokens missing from the vocab")
            }
            let key = UInt64(a) << 32 | UInt64(b)
            if merges[key] == nil { merges[key] = (rank, merged) }
        }
        self.vocab = vocab
        self.idToToken = idToToken
        self.merges = merges.mapValues { (rank: $0.0, id: $0.1) }
        if let unk = json["unk_token"]?.stringValue {
            guard let id = vocab[unk] else { throw TextError("tokenizer.json: unk_token \"\(unk)\" is not in the vocab") }
            unkID = id
        } else {
            unkID = nil
        }
        byteFallback = json["byte_fallback"]?.boolValue ?? false
        fuseUnk = json["fuse_unk"]?.boolValue ?? false
        ignoreMerges = json["ignore_merges"]?.boolValue ?? false
        if byteFallback {
            var ids: [Int] = []
            for byte in 0..<256 {
                let name = "<0x" + String(byte, radix: 16, uppercase: true).leftPadded(to: 2) + ">"
                guard let id = vocab[name] else {
                    throw TextError("tokenizer.json: byte_fallback is on but \(name) is not in the vocab")
                }
                ids.append(id)
            }
            byteTokenIDs = ids
        } else {
            byteTokenIDs = nil
        }
    }

    /// Tokenizes one word whose units are `units` (strings looked up in the vocab) with the
    /// original ranges in `ranges`; `bytes` gives each unit's UTF-8 for byte fallback.
    func tokenize(units: [String], ranges: [(Int, Int)]) -> [Symbol] {
        if units.isEmpty { return [] }
        if ignoreMerges {
            let whole = units.joined()
            if let id = vocab[whole] { return [Symbol(id: id, start: ranges[0].0, end: ranges[ranges.count - 1].1)] }
        }
        var symbols: [Symbol] = []
        symbols.reserveCapacity(units.count)
        for (unit, range) in zip(units, ranges) {
            if let id = vocab[unit] {
                symbols.append(Symbol(id: id, start: range.0, end: range.1))
            } else if let byteIDs = byteTokenIDs {
                for byte in unit.utf8 { symbols.append(Symbol(id: byteIDs[Int(byte)], start: range.0, end: range.1)) }
            } else if let unk = unkID {
                if fuseUnk, let last = symbols.last, last.id == unk, !isByteOrKnown(last) {
                    symbols[symbols.count - 1].end = range.1
                } else {
                    symbols.append(Symbol(id: unk, start: range.0, end: range.1))
                }
            }
        }
        return merge(symbols)
    }

    private func isByteOrKnown(_ symbol: Symbol) -> Bool { false }

    /// Applies merges by rank (leftmost first on ties) with a heap over a linked list.
    private func merge(_ initial: [Symbol]) -> [Symbol] {
        var symbols = initial
        let n = symbols.count
        if n < 2 { return symbols }
        var next = Array(1...n)
        next[n - 1] = -1
        var prev = Array(-1..<(n - 1))
        var alive = [Bool](repeating: true, count: n)
        var heap = MergeHeap()
        func push(_ left: Int) {
            let right = next[left]
            guard right >= 0 else { return }
            let key = UInt64(symbols[left].id) << 32 | UInt64(symbols[right].id)
            if let merge = merges[key] {
                heap.push(MergeCandidate(rank: merge.rank, left: left, leftID: symbols[left].id, rightID: symbols[right].id, newID: merge.id))
            }
        }
        for i in 0..<(n - 1) { push(i) }
        while let candidate = heap.pop() {
            let left = candidate.left
            guard alive[left], symbols[left].id == candidate.leftID else { continue }
            let right = next[left]
            guard right >= 0, alive[right], symbols[right].id == candidate.rightID else { continue }
            symbols[left].id = candidate.newID
            symbols[left].end = symbols[right].end
            alive[right] = false
            next[left] = next[right]
            if next[right] >= 0 { prev[next[right]] = left }
            if prev[left] >= 0 { push(prev[left]) }
            push(left)
        }
        var result: [Symbol] = []
        var i = 0
        while i >= 0 {
            result.append(symbols[i])
            i = next[i]
        }
        return result
    }
}

struct MergeCandidate {
    let rank: Int
    let left: Int
    let leftID: Int
    let rightID: Int
    let newID: Int

    func precedes(_ other: MergeCandidate) -> Bool {
        rank != other.rank ? rank < other.rank : left < other.left
    }
}

/// A binary min-heap of merge candidates.
struct MergeHeap {
    private var items: [MergeCandidate] = []

    mutating func push(_ item: MergeCandidate) {
        items.append(item)
        var i = items.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            if items[i].precedes(items[parent]) { items.swapAt(i, parent); i = parent } else { break }
        }
    }

    mutating func pop() -> MergeCandidate? {
        guard let first = items.first else { return nil }
        let last = items.removeLast()
        if !items.isEmpty {
            items[0] = last
            var i = 0
            while true {
                let l = 2 * i + 1, r = l + 1
                var best = i
                if l < items.count && items[l].precedes(items[best]) { best = l }
                if r < items.count && items[r].precedes(items[best]) { best = r }
                if best == i { break }
                items.swapAt(i, best)
                i = best
            }
        }
        return first
    }
}

extension String {
    func leftPadded(to length: Int, with pad: Character = "0") -> String {
        count >= length ? self : String(repeating: pad, count: length - count) + self
    }
}
