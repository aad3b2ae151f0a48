import Foundation
import RefineryModel
import RefineryText

/// The model a server answers with: its weights (an adapter merged in, if given), chat template
/// and tokenizer, the names requests may use — the base's, and one per LoRA adapter served on it
/// unmerged (a request's `model` picks it; sequences of different adapters share a batch) — its
/// stop tokens, and its vocabulary as bytes for constrained decoding.
public final class ServedModel: @unchecked Sendable {
    public let names: Set<String>
    /// Adapters by the model name that selects them.
    public let adapters: [String: LoRAAdapter]
    public let model: LlamaModel
    public let chat: ChatTokenizer
    public let stopTokens: Set<Int>
    public let vocabulary: TokenVocabulary
    /// Seconds since 1970 when it was loaded (the `created` of `/v1/models`).
    public let created: Int

    public init(name: String, model: LlamaModel, chat: ChatTokenizer, adapters: [String: LoRAAdapter] = [:]) {
        names = Set([name]).union(adapters.keys)
        self.adapters = adapters
        self.model = model
        self.chat = chat
        var stops = chat.stopTokenIDs
        stops.formUnion(model.config.eosTokenIDs)
        stopTokens = stops
        vocabulary = TokenVocabulary(tokenizer: chat.tokenizer, vocabularySize: model.config.vocabSize, stopTokens: stops)
        created = Int(Date().timeIntervalSince1970)
    }

    public var contextLength: Int { model.config.maxPositionEmbeddings }
}

/// One choice's text as its tokens arrive: decoded incrementally (never half a UTF-8
/// character), cut at the first stop string, and — while streaming — holding back the tail that
/// might be the start of a stop string until it is known not to be. Positions count Unicode
/// scalars, which later text never regroups.
struct ChoiceText {
    private var decoder: StreamingDecoder
    private let stops: [[Unicode.Scalar]]
    /// All text so far (before any stop string), as scalars.
    private var scalars: [Unicode.Scalar] = []
    /// How many scalars have been handed out.
    private var released = 0
    /// Scalars already searched for stop strings (a match can only end in what came after).
    private var searched = 0
    private(set) var stopped = false
    private(set) var tokens = 0
    private(set) var logprobs: [(token: Int, logprob: Float, top: [BatchDecoder.TokenLogprob])] = []

    init(tokenizer: Tokenizer, stops: [String]) {
        decoder = StreamingDecoder(tokenizer: tokenizer)
        self.stops = stops.map { Array($0.unicodeScalars) }
    }

    /// The text so far.
    var text: String {
        var text = ""
        text.unicodeScalars.append(contentsOf: scalars)
        return text
    }

    /// Takes a token; returns the text that may be shown now.
    mutating func append(_ token: Int, logprob: Float?, top: [BatchDecoder.TokenLogprob]) -> String {
        guard !stopped else { return "" }
        tokens += 1
        if let logprob { logprobs.append((token, logprob, top)) }
        scalars += decoder.append(token).unicodeScalars
        return release(final: false)
    }

    /// The text still held back once the sequence ended.
    mutating func finish() -> String {
        if !stopped { scalars += decoder.finish().unicodeScalars }
        return release(final: true)
    }

    private mutating func release(final: Bool) -> String {
        if !stopped, let cut = stops.compactMap({ firstIndex(of: $0) }).min() {
            scalars.removeSubrange(cut...)
            stopped = true
        }
        searched = scalars.count
        var end = scalars.count
        if !stopped && !final {
            // Hold back a tail that a stop string could still grow from.
            for stop in stops {
                for length in stride(from: min(stop.count - 1, scalars.count), to: 0, by: -1)
                where scalars[(scalars.count - length)...].elementsEqual(stop[..<length]) {
                    end = min(end, scalars.count - length)
                    break
                }
            }
        }
        guard end > released else { return "" }
        var piece = ""
        piece.unicodeScalars.append(contentsOf: scalars[released..<end])
        released = end
        return piece
    }

    private func firstIndex(of stop: [Unicode.Scalar]) -> Int? {
        guard !stop.isEmpty, scalars.count >= stop.count else { return nil }
        let from = max(0, searched - stop.count + 1)
        guard from <= scalars.count - stop.count else { return nil }
        return (from...(scalars.count - stop.count)).first { scalars[$0..<($0 + stop.count)].elementsEqual(stop) }
    }
}
