import Foundation
import RefineryCore
import RefineryModel

/// `refinery-bench classify MODEL_DIR FILE OUT`: scores the `"text"` of every line of FILE with
/// the BERT-family sequence classifier in MODEL_DIR (dtype from BENCH_DTYPE: float32, bfloat16, or
/// int8 for dynamically quantized layer products), timed from the texts
/// in memory to the logits (tokenization included); writes the logits to OUT as little-endian
/// float32 rows and prints seconds, texts/s and tokens.
enum ClassifyBench {
    static func run(model: String, path: String, output: String) throws {
        var texts: [String] = []
        try LineReader.forEachLine(path: path) { line, number in
            guard let text = try JSONValue.parse(line)["text"]?.stringValue else { throw CoreError("\(path):\(number): expected {\"text\": string}") }
            texts.append(text)
        }
        let int8 = ProcessInfo.processInfo.environment["BENCH_DTYPE"] == "int8"
        let classifier = try BertSequenceClassifier(directory: URL(fileURLWithPath: model), dtype: int8 ? .float32 : try benchDType(),
                                                    int8Products: int8)
        _ = try classifier.logits(Array(texts.prefix(16)))
        let batchTokens = ProcessInfo.processInfo.environment["BENCH_BATCH_TOKENS"].flatMap(Int.init) ?? 4096
        let start = DispatchTime.now().uptimeNanoseconds
        let logits = try classifier.logits(texts, batchTokens: batchTokens)
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        let tokens = texts.reduce(0) { $0 + classifier.tokenIDs($1).count }
        var data = Data()
        for row in logits { row.withUnsafeBufferPointer { data.append($0) } }
        try data.write(to: URL(fileURLWithPath: output))
        print("{\"seconds\": \(seconds), \"texts_per_second\": \(Double(texts.count) / seconds), \"tokens\": \(tokens), "
              + "\"dtype\": \"\(int8 ? "int8" : classifier.encoder.dtype.rawValue)\"}")
    }
}
