import RefineryCore

/// The `model` section of `tokenizer.json` for `"type": "WordPiece"` (BERT and its family):
/// each word becomes the longest vocabulary entries that cover it left to right, pieces after the
/// first carrying the continuing-subword prefix (`##`); a word with a part no entry covers, or
/// longer than `max_input_chars_per_word`, becomes the unknown token as a whole — as `tokenizers` does.
struct WordPieceModel: Sendable {
    let vocab: [String: Int]
    let idToToken: [String]
    let unknownID: Int
    let maxCharactersPerWord: Int
    /// The vocabulary as two tries of scalars: entries that start a word, and the continuing
    /// entries without their prefix — the longest entry at a position is one walk, not a string
    /// built and hashed for every shorter candidate.
    let wordStarts: ScalarTrie
    let continuations: ScalarTrie

    init(json: JSONValue) throws {
        guard let vocabPairs = json["vocab"]?.objectValue else {
            throw TextError("tokenizer.json: the WordPiece model has no \"vocab\" object")
        }
        var vocab: [String: Int] = [:]
        vocab.reserveCapacity(vocabPairs.count)
        var maxID = -1
        for (token, value) in vocabPairs {
            guard let id = value.intValue, id >= 0, id < 10_000_000 else {
                throw TextError("tokenizer.json: WordPiece vocab entry \"\(token)\" has no valid id")
            }
            vocab[token] = id
            maxID = max(maxID, id)
        }
        var idToToken = [String](repeating: "", count: maxID + 1)
        for (token, id) in vocab { idToToken[id] = token }
        let unknown = json["unk_token"]?.stringValue ?? "[UNK]"
        guard let unknownID = vocab[unknown] else {
            throw TextError("tokenizer.json: the WordPiece unknown token \"\(unknown)\" is not in the vocab")
        }
        let maxCharacters = json["max_input_chars_per_word"]?.intValue ?? 100
        guard maxCharacters > 0 else {
            throw TextError("tokenizer.json: max_input_chars_per_word must be positive, not \(maxCharacters)")
        }
        self.vocab = vocab
        self.idToToken = idToToken
        self.unknownID = unknownID
        let prefix = json["continuing_subword_prefix"]?.stringValue ?? "##"
        maxCharactersPerWord = maxCharacters
        var starts = ScalarTrie(), continuing = ScalarTrie()
        for (token, id) in vocab {
            starts.insert(Array(token.unicodeScalars), id: id)
            if !prefix.isEmpty, token.unicodeScalars.starts(with: prefix.unicodeScalars) {
                continuing.insert(Array(token.unicodeScalars.dropFirst(prefix.unicodeScalars.count)), id: id)
            }
        }
        // An empty prefix makes every entry a continuation too.
        wordStarts = starts
        continuations = prefix.isEmpty ? starts : continuing
    }

    /// The pieces of one word: `scalars` with, for each, its `[start, end)` in the input.
    func tokenize(scalars: [Unicode.Scalar], ranges: [(Int, Int)]) -> [Symbol] {
        guard let first = ranges.first, let last = ranges.last else { return [] }
        let whole = [Symbol(id: unknownID, start: first.0, end: last.1)]
        if scalars.count > maxCharactersPerWord { return whole }
        var pieces: [Symbol] = []
        var start = 0
        while start < scalars.count {
            guard let (id, end) = (start == 0 ? wordStarts : continuations).longestEntry(in: scalars, from: start) else { return whole }
            pieces.append(Symbol(id: id, start: ranges[start].0, end: ranges[end - 1].1))
            start = end
        }
        return pieces
    }
}

/// The tokenization model of a `tokenizer.json`.
enum TokenModel: Sendable {
    case bpe(BPEModel)
    case wordPiece(WordPieceModel)

    init(json: JSONValue) throws {
        let type = json["type"]?.stringValue ?? "BPE"
        switch type {
        case "BPE": self = .bpe(try BPEModel(json: json))
        case "WordPiece": self = .wordPiece(try WordPieceModel(json: json))
        default:
            throw TextError("tokenizer.json: model type \"\(type)\" is not supported (BPE: Llama, Mistral, Qwen2, SmolLM and GPT-2 style tokenizers; WordPiece: BERT-family encoders)")
        }
    }

    var vocab: [String: Int] {
        switch self {
        case let .bpe(model): return model.vocab
        case let .wordPiece(model): return model.vocab
        }
    }

    var idToToken: [String] {
        switch self {
        case let .bpe(model): return model.idToToken
        case let .wordPiece(model): return model.idToToken
        }
    }
}

/// A trie of scalar sequences with an id at each node that ends an entry.
struct ScalarTrie: Sendable {
    /// Children of each node by scalar value; node 0 is the root.
    private var children: [[UInt32: Int32]] = [[:]]
    /// The entry's id at each node, -1 where no entry ends.
    private var ids: [Int32] = [-1]

    /// Adds `entry` (a non-empty sequence) with `id`; a repeated entry keeps the last id.
    mutating func insert(_ entry: [Unicode.Scalar], id: Int) {
        guard !entry.isEmpty else { return }
        var node = 0
        for scalar in entry {
            if let child = children[node][scalar.value] {
                node = Int(child)
            } else {
                children.append([:])
                ids.append(-1)
                children[node][scalar.value] = Int32(children.count - 1)
                node = children.count - 1
            }
        }
        ids[node] = Int32(id)
    }

    /// The longest entry that `scalars[start...]` begins with: its id and where it ends; nil
    /// when no entry does.
    func longestEntry(in scalars: [Unicode.Scalar], from start: Int) -> (id: Int, end: Int)? {
        var node = 0, best: (id: Int, end: Int)? = nil
        var position = start
        while position < scalars.count, let child = children[node][scalars[position].value] {
            node = Int(child)
            position += 1
            if ids[node] >= 0 { best = (Int(ids[node]), position) }
        }
        return best
    }
}
