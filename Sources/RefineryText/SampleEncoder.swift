import Foundation

/// A tokenized sample with its loss mask (DESIGN §3.2).
public struct EncodedSample: Sendable, Equatable {
    /// Token ids.
    public var ids: [Int]
    /// `trained[t]`: token t is a label (predicted from position t − 1).
    public var trained: [Bool]
    /// True when the sample was cut to the maximum length.
    public var truncated: Bool

    public init(ids: [Int], trained: [Bool], truncated: Bool = false) {
        self.ids = ids
        self.trained = trained
        self.truncated = truncated
    }

    /// Number of tokens that contribute to the loss (position 0 cannot).
    public var trainedCount: Int { trained.dropFirst().filter { $0 }.count }
}

/// What the loss is computed on.
public enum TrainOn: String, Sendable {
    /// The characters of each assistant message plus the end-of-turn marker after it.
    case assistant
    /// Every token.
    case all
}

/// Renders, tokenizes and masks samples.
public struct SampleEncoder: Sendable {
    public let chat: ChatTokenizer
    public let trainOn: TrainOn
    /// Maximum tokens per sample (nil: no limit); longer samples are truncated.
    public let maxLength: Int?

    public init(chat: ChatTokenizer, trainOn: TrainOn = .assistant, maxLength: Int? = nil) {
        self.chat = chat
        self.trainOn = trainOn
        self.maxLength = maxLength
    }

    /// Encodes one sample.
    public func encode(_ sample: Sample) throws -> EncodedSample {
        var result: EncodedSample
        switch sample {
        case let .text(text):
            var ids = chat.tokenizer.encode(text, addSpecialTokens: true).ids
            if let eos = chat.eosToken, let id = chat.tokenizer.id(of: eos) { ids.append(id) }
            result = EncodedSample(ids: ids, trained: Array(repeating: true, count: ids.count), truncated: false)
        case let .chat(messages):
            let text = try chat.render(messages)
            let encoding = chat.tokenizer.encode(text, addSpecialTokens: false)
            if trainOn == .all {
                result = EncodedSample(ids: encoding.ids, trained: Array(repeating: true, count: encoding.ids.count), truncated: false)
            } else {
                let spans = try Self.trainedSpans(text: text, messages: messages, markers: chat.tokenizer.specialTokenContents)
                let trained = encoding.offsets.map { offset in spans.contains { $0.contains(offset.0) } }
                result = EncodedSample(ids: encoding.ids, trained: trained, truncated: false)
            }
        }
        if let maxLength, result.ids.count > maxLength {
            result.ids.removeSubrange(maxLength...)
            result.trained.removeSubrange(maxLength...)
            result.truncated = true
        }
        return result
    }

    /// DESIGN §3.2: each assistant message's content (found in order in the rendered text;
    /// trimmed if the template trims it) plus the special end-of-turn token right after it.
    /// Ranges are in Unicode scalars.
    public static func trainedSpans(text: String, messages: [ChatMessage], markers: [String]) throws -> [Range<Int>] {
        let scalars = Array(text.unicodeScalars)
        let sortedMarkers = markers.map { Array($0.unicodeScalars) }.filter { !$0.isEmpty }.sorted { $0.count > $1.count }
        var spans: [Range<Int>] = []
        var cursor = 0
        for (index, message) in messages.enumerated() where message.role == "assistant" {
            var content = Array(message.content.unicodeScalars)
            var start = find(content, in: scalars, from: cursor)
            if start == nil {
                content = Array(message.content.trimmingCharacters(in: .whitespacesAndNewlines).unicodeScalars)
                start = find(content, in: scalars, from: cursor)
            }
            guard let start else {
                throw TextError("message \(index) (assistant) does not appear in the rendered chat template output, so its tokens cannot be masked; the template rewrites assistant text — use --template or train_on: all")
            }
            var end = start + content.count
            for marker in sortedMarkers where end + marker.count <= scalars.count && Array(scalars[end..<(end + marker.count)]) == marker {
                end += marker.count
                break
            }
            spans.append(start..<end)
            cursor = end
        }
        return spans
    }

    static func find(_ needle: [Unicode.Scalar], in haystack: [Unicode.Scalar], from start: Int) -> Int? {
        if needle.isEmpty { return start <= haystack.count ? start : nil }
        guard haystack.count >= needle.count else { return nil }
        var i = start
        let first = needle[0]
        while i + needle.count <= haystack.count {
            if haystack[i] == first && Array(haystack[i..<(i + needle.count)]) == needle { return i }
            i += 1
        }
        return nil
    }
}
