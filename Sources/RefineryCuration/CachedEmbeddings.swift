import RefineryCore
import RefineryData
import RefineryStore

/// Which text of a sample is embedded.
public enum EmbeddedText: Sendable, Equatable {
    /// The instruction and the answer, a blank line between (a text sample: its text).
    case instructionAndAnswer
    /// One top-level field of the row (a string as it is; anything else as compact JSON).
    case field(String)

    /// The text of `line`, or nil when the field is missing.
    public func of(_ line: DatasetLine) -> String? {
        switch self {
        case .instructionAndAnswer:
            let parts = SampleParts(line.sample)
            return parts.instruction.isEmpty ? parts.answer : parts.instruction + "\n\n" + parts.answer
        case let .field(name):
            guard let value = (try? JSONValue.parse(line.row))?[name], !value.isNull else { return nil }
            return value.stringValue ?? value.compactText
        }
    }

    /// Every line's text; a line without the field stops with its file and line.
    public func texts(of lines: [DatasetLine], source: String) throws -> [String] {
        try lines.map { line in
            guard let text = of(line) else {
                if case let .field(name) = self {
                    throw CoreError("\(source):\(line.lineNumber): the sample has no \"\(name)\" field to embed; fix the line or choose another --field")
                }
                throw CoreError("\(source):\(line.lineNumber): nothing to embed")
            }
            return text
        }
    }

    /// How the setting is written in stage settings.
    public var settingsText: String {
        switch self {
        case .instructionAndAnswer: return "instruction+answer"
        case let .field(name): return "field=\(name)"
        }
    }
}

/// Embeddings through the run's cache: vectors already in `store` for this embedder's key are
/// read back; the rest are computed in chunks, each chunk stored as soon as it is done, so a run
/// killed midway keeps what it finished and never computes (or pays for) those again.
public enum CachedEmbeddings {
    /// The vectors of `texts`, in order. `report` gets progress lines.
    public static func vectors(of texts: [String], embedder: any TextEmbedder, store: RunStore?, chunk: Int? = nil,
                               report: (String) -> Void = { _ in }) throws -> [[Float]] {
        let chunk = max(1, chunk ?? embedder.preferredChunk)
        let digests = texts.map { ContentDigest.sha256($0) }
        var cached = try store?.embeddings(model: embedder.key, digests: Array(Set(digests))) ?? [:]
        var missing: [Int] = []
        var seen = Set<String>()
        for (index, digest) in digests.enumerated() where cached[digest] == nil && seen.insert(digest).inserted {
            missing.append(index)
        }
        let before = digests.filter { cached[$0] != nil }.count
        if before > 0 { report("[embed] \(before) of \(texts.count) texts embedded before (from the state)\n") }
        var done = 0
        for start in stride(from: 0, to: missing.count, by: chunk) {
            let part = Array(missing[start..<min(missing.count, start + chunk)])
            let computed = try embedder.embed(part.map { texts[$0] }) { _ in }
            guard computed.count == part.count else {
                throw CoreError("the embedder returned \(computed.count) vectors for \(part.count) texts")
            }
            let pairs = zip(part, computed).map { (digest: digests[$0], vector: $1) }
            try store?.storeEmbeddings(model: embedder.key, pairs)
            for pair in pairs { cached[pair.digest] = pair.vector }
            done += part.count
            report("\r[embed] " + ProgressBar.render(done: done, total: missing.count) + " \(done)/\(missing.count) texts embedded")
        }
        if !missing.isEmpty { report("\n") }
        let vectors = digests.map { cached[$0] ?? [] }
        if let width = vectors.first?.count, vectors.contains(where: { $0.count != width }) {
            throw CoreError("the cached embeddings of \(embedder.key) have different widths; delete the run's embedding cache (table embedding) and embed again")
        }
        return vectors
    }
}
