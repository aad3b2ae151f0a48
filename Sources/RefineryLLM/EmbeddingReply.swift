import RefineryCore

/// A reply of `/v1/embeddings`: one vector per input, in input order, and the tokens billed.
public struct EmbeddingReply: Sendable, Equatable {
    public var vectors: [[Float]]
    public var promptTokens: Int

    public init(vectors: [[Float]], promptTokens: Int) {
        self.vectors = vectors
        self.promptTokens = promptTokens
    }

    /// Parses a body answering `count` inputs: every index `0..<count` exactly once, every vector
    /// of numbers and all of one width — anything else is a malformed reply (retried).
    static func parse(_ body: String, count: Int) throws(LLMError) -> EmbeddingReply {
        guard let json = try? JSONValue.parse(body) else { throw .malformedResponse("the body is not JSON: \(body.prefix(120))") }
        guard let data = json["data"]?.arrayValue else { throw .malformedResponse("no data array in \(body.prefix(120))") }
        guard data.count == count else { throw .malformedResponse("\(data.count) embeddings for \(count) inputs") }
        var vectors = [[Float]?](repeating: nil, count: count)
        for (position, item) in data.enumerated() {
            let index = item["index"]?.intValue ?? position
            guard index >= 0, index < count, vectors[index] == nil else {
                throw .malformedResponse("embedding index \(index) is out of range or repeated")
            }
            guard let values = item["embedding"]?.arrayValue else {
                throw .malformedResponse("data[\(position)].embedding is not an array of numbers (base64 replies are not read)")
            }
            var vector: [Float] = []
            vector.reserveCapacity(values.count)
            for value in values {
                guard let number = value.doubleValue, number.isFinite else {
                    throw .malformedResponse("data[\(position)].embedding holds \(value.compactText), not a finite number")
                }
                vector.append(Float(number))
            }
            vectors[index] = vector
        }
        let complete = vectors.compactMap { $0 }
        guard let width = complete.first?.count, width > 0, complete.allSatisfy({ $0.count == width }) else {
            throw .malformedResponse("the embeddings are empty or of different widths")
        }
        return EmbeddingReply(vectors: complete, promptTokens: json["usage"]?["prompt_tokens"]?.intValue ?? 0)
    }
}
