/// Turns generated ids into text pieces as they arrive, holding back an incomplete UTF-8
/// character (shown as U+FFFD) until its remaining bytes come.
public struct StreamingDecoder: Sendable {
    let tokenizer: Tokenizer
    private var ids: [Int] = []
    private var printed = ""

    public init(tokenizer: Tokenizer) { self.tokenizer = tokenizer }

    /// The text that `id` adds (possibly empty).
    public mutating func append(_ id: Int) -> String {
        ids.append(id)
        let text = tokenizer.decode(ids, skipSpecialTokens: true)
        guard !text.hasSuffix("\u{FFFD}"), text.hasPrefix(printed) else { return "" }
        defer { printed = text }
        return String(text.dropFirst(printed.count))
    }

    /// Whatever is still held back once generation ends.
    public mutating func finish() -> String {
        let text = tokenizer.decode(ids, skipSpecialTokens: true)
        guard text.hasPrefix(printed) else { return "" }
        defer { printed = text }
        return String(text.dropFirst(printed.count))
    }
}
