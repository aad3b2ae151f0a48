import Foundation
import RefineryCore

/// One encoded text: token ids with, for each token, the range of Unicode scalars of the input
/// it came from (`tokenizers`' character offsets).
public struct Encoding: Sendable, Equatable {
    /// Token ids.
    public var ids: [Int]
    /// `[start, end)` offsets in Unicode scalars of the input; special tokens added by the
    /// post-processor get `(0, 0)`.
    public var offsets: [(Int, Int)]

    public static func == (lhs: Encoding, rhs: Encoding) -> Bool {
        lhs.ids == rhs.ids && lhs.offsets.count == rhs.offsets.count
            && zip(lhs.offsets, rhs.offsets).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
    }
}

/// A Hugging Face `tokenizer.json` tokenizer: BPE, byte-level (GPT-2, Llama 3, Qwen2, SmolLM)
/// or SentencePiece-style with byte fallback (Llama 2, Mistral, TinyLlama), or WordPiece (BERT-family
/// encoders such as all-MiniLM-L6-v2).
public struct Tokenizer: Sendable {
    let model: TokenModel
    let normalizer: Normalizer?
    let preTokenizer: PreTokenizer?
    let decoder: TokenDecoder?
    let postProcessor: PostProcessor?
    /// Added tokens (special and not), in file order.
    public let addedTokens: [AddedToken]
    let matcher: AddedTokenMatcher
    let addedByID: [Int: AddedToken]
    let byteLevel: Bool

    /// Loads `tokenizer.json` from `url`.
    public init(contentsOf url: URL) throws {
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw TextError("cannot read \(url.path): \(error.localizedDescription). Point --model at a folder holding tokenizer.json.")
        }
        let json: JSONValue
        do { json = try JSONValue.parse(bytes: Array(data)) } catch {
            throw TextError("\(url.path) is not valid JSON: \(error)")
        }
        do { try self.init(json: json) } catch let error as TextError {
            throw TextError("\(url.path): \(error.message)")
        }
    }

    /// Builds a tokenizer from the parsed `tokenizer.json`.
    public init(json: JSONValue) throws {
        guard let modelJSON = json["model"] else { throw TextError("tokenizer.json has no \"model\" section") }
        model = try TokenModel(json: modelJSON)
        normalizer = try Normalizer.parse(json["normalizer"])
        preTokenizer = try PreTokenizer.parse(json["pre_tokenizer"])
        decoder = try TokenDecoder.parse(json["decoder"])
        postProcessor = try PostProcessor.parse(json["post_processor"])
        addedTokens = try (json["added_tokens"]?.arrayValue ?? []).map { try AddedToken(json: $0) }
        matcher = AddedTokenMatcher(tokens: addedTokens)
        addedByID = Dictionary(addedTokens.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        byteLevel = Self.containsByteLevel(preTokenizer)
    }

    static func containsByteLevel(_ p: PreTokenizer?) -> Bool {
        switch p {
        case .byteLevel?: return true
        case let .sequence(items)?: return items.contains { containsByteLevel($0) }
        default: return false
        }
    }

    /// Size of the vocabulary including added tokens.
    public var vocabularySize: Int {
        max(model.idToToken.count, (addedTokens.map(\.id).max() ?? -1) + 1)
    }

    /// The id of `token` (vocab or added), or nil.
    public func id(of token: String) -> Int? {
        if let added = addedTokens.first(where: { $0.content == token }) { return added.id }
        return model.vocab[token]
    }

    /// The string of token `id`, or nil when out of range.
    public func token(of id: Int) -> String? {
        if let added = addedByID[id] { return added.content }
        guard id >= 0 && id < model.idToToken.count else { return nil }
        return model.idToToken[id]
    }

    /// The contents of special added tokens (end-of-turn markers, BOS, EOS…).
    public var specialTokenContents: [String] { addedTokens.filter(\.special).map(\.content) }

    /// Encodes `text` as `tokenizers`' `encode(text, add_special_tokens:)` does.
    public func encode(_ text: String, addSpecialTokens: Bool = true) -> Encoding {
        let scalars = Array(text.unicodeScalars)
        var ids: [Int] = []
        var offsets: [(Int, Int)] = []
        for (range, token) in matcher.split(scalars) {
            if let token {
                ids.append(token.id)
                offsets.append((range.lowerBound + leadingStripped(scalars, range, token), range.lowerBound + leadingStripped(scalars, range, token) + token.content.unicodeScalars.count))
                continue
            }
            var normalized = NormalizedText(scalars: Array(scalars[range]), offset: range.lowerBound)
            normalizer?.apply(&normalized)
            let words = preTokenizer?.apply([normalized]) ?? [normalized]
            for word in words where !word.isEmpty {
                for symbol in tokenizeWord(word) {
                    ids.append(symbol.id)
                    offsets.append((symbol.start, symbol.end))
                }
            }
        }
        var encoding = Encoding(ids: ids, offsets: offsets)
        if addSpecialTokens, let postProcessor { encoding = postProcessor.apply(encoding) }
        return encoding
    }

    /// Encodes `text` with the special tokens, keeping at most `maxLength` tokens in all: the text's
    /// own tokens are cut at the end so that they and the special tokens fit, as `tokenizers`'
    /// `longest_first` truncation does for one sequence (what sentence-transformers asks for).
    public func encode(_ text: String, truncatingTo maxLength: Int) -> Encoding {
        var encoding = encode(text, addSpecialTokens: false)
        let added = postProcessor?.apply(Encoding(ids: [], offsets: [])).ids.count ?? 0
        let keep = max(0, maxLength - added)
        if encoding.ids.count > keep {
            encoding.ids.removeLast(encoding.ids.count - keep)
            encoding.offsets.removeLast(encoding.offsets.count - keep)
        }
        if let postProcessor { encoding = postProcessor.apply(encoding) }
        return encoding
    }

    private func leadingStripped(_ scalars: [Unicode.Scalar], _ range: Range<Int>, _ token: AddedToken) -> Int {
        guard token.lstrip else { return 0 }
        var skip = 0
        while range.lowerBound + skip < range.upperBound && scalars[range.lowerBound + skip].properties.isWhitespace
                && !(token.content.unicodeScalars.first?.properties.isWhitespace ?? false) {
            skip += 1
        }
        return skip
    }

    private func tokenizeWord(_ word: NormalizedText) -> [Symbol] {
        let model: BPEModel
        switch self.model {
        case let .bpe(bpe): model = bpe
        case let .wordPiece(wordPiece):
            return wordPiece.tokenize(scalars: word.scalars, ranges: word.origins.map { ($0, $0 + 1) })
        }
        var units: [String] = []
        var ranges: [(Int, Int)] = []
        if byteLevel {
            for (scalar, origin) in zip(word.scalars, word.origins) {
                for byte in String(Character(scalar)).utf8 {
                    units.append(String(Character(ByteLevelMap.byteToScalar[Int(byte)])))
                    ranges.append((origin, origin + 1))
                }
            }
        } else {
            for (scalar, origin) in zip(word.scalars, word.origins) {
                units.append(String(Character(scalar)))
                ranges.append((origin, origin + 1))
            }
        }
        return model.tokenize(units: units, ranges: ranges)
    }

    /// The bytes token `id` adds in the middle of a decoded text (a byte-level piece may be part
    /// of a UTF-8 character); nil for a special token or an unknown id.
    public func tokenBytes(_ id: Int) -> [UInt8]? {
        if let added = addedByID[id] { return added.special ? nil : Array(added.content.utf8) }
        guard let text = token(of: id) else { return nil }
        return decoder?.bytes(ofToken: text) ?? Array(text.utf8)
    }

    /// Decodes ids to text as `tokenizers`' `decode(ids, skip_special_tokens:)` does.
    public func decode(_ ids: [Int], skipSpecialTokens: Bool = false) -> String {
        var tokens: [String] = []
        for id in ids {
            if let added = addedByID[id] {
                if skipSpecialTokens && added.special { continue }
                tokens.append(added.content)
            } else if let text = token(of: id) {
                tokens.append(text)
            }
        }
        guard let decoder else { return tokens.joined(separator: " ") }
        return decoder.decode(tokens).joined()
    }
}
