import Foundation
import RefineryCore
import RefineryModel

/// `refinery-bench embed MODEL_DIR FILE OUT`: embeds the `"text"` of every line of FILE with the
/// sentence-transformers model in MODEL_DIR (dtype from BENCH_DTYPE), timed from the texts in
/// memory to the vectors (tokenization included, as in `SentenceTransformer.encode`); writes the
/// vectors to OUT as little-endian float32 rows and prints seconds, sentences/s and tokens.
enum EmbedBench {
    static func run(model: String, path: String, output: String) throws {
        var texts: [String] = []
        try LineReader.forEachLine(path: path) { line, number in
            guard let text = try JSONValue.parse(line)["text"]?.stringValue else {
                throw CoreError("\(path):\(number): expected {\"text\": string}")
            }
            texts.append(text)
        }
        let embedder = try SentenceEmbedder(directory: URL(fileURLWithPath: model), dtype: try benchDType())
        _ = try embedder.embed(Array(texts.prefix(64)))
        let start = DispatchTime.now().uptimeNanoseconds
        let batchTokens = ProcessInfo.processInfo.environment["BENCH_BATCH_TOKENS"].flatMap(Int.init) ?? 4096
        let vectors = try embedder.embed(texts, batchTokens: batchTokens)
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        let tokens = texts.reduce(0) { $0 + embedder.tokenIDs($1).count }
        var data = Data(capacity: vectors.count * embedder.dimension * 4)
        for vector in vectors { vector.withUnsafeBufferPointer { data.append($0) } }
        try data.write(to: URL(fileURLWithPath: output))
        print("{\"seconds\": \(seconds), \"sentences_per_second\": \(Double(texts.count) / seconds), \"tokens\": \(tokens), "
              + "\"dtype\": \"\(embedder.encoder.dtype.rawValue)\"}")
    }
}
