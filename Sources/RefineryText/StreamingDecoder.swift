/// Turns generated ids into text pieces as they arrive, holding back an incomplete UTF-8
/// character (shown as U+FFFD) until its remaining bytes come. Each piece is the difference
/// between decoding a short window of recent ids with and without the newest ones (the
/// incremental scheme of vLLM and text-generation-inference), counted in Unicode scalars: a
/// combining mark that later joins a printed character, or a decoder that strips the start of
/// a text, never stalls the stream. For valid UTF-8 the pieces add up to the whole decode.
public struct StreamingDecoder: Sendable {
    let tokenizer: Tokenizer
    private var ids: [Int] = []
    /// The window starts at `prefixOffset`; ids before `readOffset` have been printed.
    private var prefixOffset = 0
    private var readOffset = 0

    public init(tokenizer: Tokenizer) { self.tokenizer = tokenizer }

    /// The text that `id` adds (possibly empty).
    public mutating func append(_ id: Int) -> String {
        ids.append(id)
        return release(final: false)
    }

    /// Whatever is still held back once generation ends.
    public mutating func finish() -> String { release(final: true) }

    private mutating func release(final: Bool) -> String {
        let printed = Array(tokenizer.decode(Array(ids[prefixOffset..<readOffset]), skipSpecialTokens: true).unicodeScalars)
        let current = tokenizer.decode(Array(ids[prefixOffset...]), skipSpecialTokens: true)
        let scalars = Array(current.unicodeScalars)
        guard scalars.count > printed.count, final || !current.hasSuffix("\u{FFFD}") else { return "" }
        var piece = ""
        piece.unicodeScalars.append(contentsOf: scalars[printed.count...])
        prefixOffset = readOffset
        readOffset = ids.count
        return piece
    }
}
