import Foundation

/// What chunking dropped, for the report.
public struct ChunkingStats: Sendable, Equatable {
    public var articles = 0
    public var emptyArticles = 0
    public var chunks = 0
    /// Pieces shorter than the minimum that were dropped, and their characters.
    public var droppedPieces = 0
    public var droppedCharacters = 0
    /// Sentences longer than the maximum that were cut at word boundaries.
    public var splitSentences = 0

    public init() {}
}

/// Splits text into sentences and packs them into chunks of `minimum…maximum` characters, as the
/// reference pipeline does (its sentence regex; shorter remainders are dropped and counted), with
/// over-long sentences cut at word boundaries instead of producing over-long chunks.
public struct Chunker: Sendable {
    public let minimum: Int
    public let maximum: Int

    public init(minimum: Int = 1000, maximum: Int = 2000) throws {
        guard minimum > 0, maximum >= minimum else {
            throw DataError("chunk sizes must satisfy 0 < min ≤ max (got min \(minimum), max \(maximum))")
        }
        self.minimum = minimum
        self.maximum = maximum
    }

    static let sentenceBoundary: NSRegularExpression = {
        do {
            return try NSRegularExpression(pattern: #"(?<!\w\.\w.)(?<![A-Z][a-z]\.)(?<=\.|\?|\!)\s"#)
        } catch {
            fatalError("sentence pattern must compile: \(error)")
        }
    }()

    /// Sentences of `text` (split after . ? ! followed by whitespace, not after abbreviations like "e.g." or "Dr.").
    public static func sentences(_ text: String) -> [String] {
        let ns = text as NSString
        var result: [String] = []
        var start = 0
        for match in sentenceBoundary.matches(in: text, range: NSRange(location: 0, length: ns.length)) {
            result.append(ns.substring(with: NSRange(location: start, length: match.range.location - start)))
            start = match.range.location + match.range.length
        }
        result.append(ns.substring(from: start))
        return result.map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }.filter { !$0.isEmpty }
    }

    /// Cuts a sentence longer than `maximum` into pieces at word boundaries.
    func pieces(of sentence: String) -> [String] {
        guard sentence.count > maximum else { return [sentence] }
        var result: [String] = []
        var current = ""
        for word in sentence.split(separator: " ", omittingEmptySubsequences: true) {
            var word = Substring(word)
            while word.count > maximum {  // a single enormous "word"
                if !current.isEmpty { result.append(current); current = "" }
                result.append(String(word.prefix(maximum)))
                word = word.dropFirst(maximum)
            }
            if current.count + word.count + (current.isEmpty ? 0 : 1) > maximum {
                result.append(current)
                current = String(word)
            } else {
                current += (current.isEmpty ? "" : " ") + word
            }
        }
        if !current.isEmpty { result.append(current) }
        return result
    }

    /// The chunks of one (cleaned) text; updates `stats`.
    public func chunks(_ text: String, stats: inout ChunkingStats) -> [String] {
        stats.articles += 1
        if text.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty {
            stats.emptyArticles += 1
            return []
        }
        var result: [String] = []
        var current = ""
        func close() {
            let chunk = current.trimmingCharacters(in: .whitespaces)
            if chunk.count >= minimum {
                result.append(chunk)
            } else if !chunk.isEmpty {
                stats.droppedPieces += 1
                stats.droppedCharacters += chunk.count
            }
            current = ""
        }
        for sentence in Self.sentences(text) {
            let parts = pieces(of: sentence)
            if parts.count > 1 { stats.splitSentences += 1 }
            for part in parts {
                if current.count + part.count <= maximum {
                    current += part + " "
                } else {
                    close()
                    current = part + " "
                }
            }
        }
        close()
        stats.chunks += result.count
        return result
    }
}
