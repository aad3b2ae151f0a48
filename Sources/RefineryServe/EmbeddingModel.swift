import Foundation
import RefineryCore
import RefineryModel

/// A sentence-transformers model served at `/v1/embeddings`: texts in, the model's pooled (and,
/// as its folder says, normalised) vectors out, computed one request at a time on a thread of
/// their own so the server's event loops never wait on them.
public final class EmbeddingModel: @unchecked Sendable {
    public let names: Set<String>
    public let embedder: SentenceEmbedder
    private let queue = DispatchQueue(label: "refinery-embed")
    /// Most texts one request may hold.
    public static let maxInputs = 2048

    public init(names: Set<String>, embedder: SentenceEmbedder) {
        self.names = names
        self.embedder = embedder
    }

    /// Reads a `/v1/embeddings` body and answers it.
    func answer(_ body: JSONValue) async throws -> JSONValue {
        guard let model = body["model"]?.stringValue else { throw APIError("model is required", parameter: "model") }
        guard names.contains(model) else {
            throw APIError("the model \(model) is not served here; GET /v1/models lists \(names.sorted().joined(separator: ", "))",
                           parameter: "model", status: 404, code: "model_not_found")
        }
        let texts: [String]
        if let single = body["input"]?.stringValue {
            texts = [single]
        } else if let list = body["input"]?.arrayValue, !list.isEmpty, list.allSatisfy({ $0.stringValue != nil }) {
            texts = list.compactMap(\.stringValue)
        } else {
            throw APIError("input must be a string or a non-empty list of strings", parameter: "input")
        }
        guard texts.count <= Self.maxInputs else { throw APIError("input holds \(texts.count) texts; at most \(Self.maxInputs) per request", parameter: "input") }
        if let format = body["encoding_format"]?.stringValue, format != "float" {
            throw APIError("encoding_format \(format) is not supported; use float", parameter: "encoding_format")
        }
        if let dimensions = body["dimensions"], dimensions != .null, dimensions.intValue != embedder.dimension {
            throw APIError("this model's vectors have \(embedder.dimension) dimensions", parameter: "dimensions")
        }
        let embedder = embedder
        let (vectors, tokens): ([[Float]], Int) = try await withCheckedThrowingContinuation { continuation in
            queue.async {
                do {
                    let tokens = texts.map { embedder.tokenIDs($0).count }.reduce(0, +)
                    continuation.resume(returning: (try embedder.embed(texts), tokens))
                } catch {
                    continuation.resume(throwing: APIError("embedding failed: \(error)", status: 500, type: "server_error"))
                }
            }
        }
        let data: [JSONValue] = vectors.enumerated().map { index, vector in
            .object([("object", .string("embedding")), ("index", .int(index)), ("embedding", .array(vector.map { .double(Double($0)) }))])
        }
        return .object([("object", .string("list")), ("data", .array(data)), ("model", .string(model)),
                        ("usage", .object([("prompt_tokens", .int(tokens)), ("total_tokens", .int(tokens))]))])
    }
}
