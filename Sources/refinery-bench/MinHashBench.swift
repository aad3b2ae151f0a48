import Foundation
import RefineryCore
import RefineryCuration

/// `refinery-bench minhash FILE THRESHOLD NUM_PERM NGRAM`: MinHash-LSH deduplication (keep first)
/// of a JSONL file of `{"id", "text"}` documents, timed from the texts in memory to the decisions;
/// prints the seconds, documents per second and the dropped ids (bench/minhash.sh scores them).
enum MinHashBench {
    static func run(path: String, threshold: Double, permutations: Int, ngram: Int) throws {
        var ids: [Int] = [], texts: [String] = []
        try LineReader.forEachLine(path: path) { line, number in
            let json = try JSONValue.parse(line)
            guard let id = json["id"]?.intValue, let text = json["text"]?.stringValue else {
                throw CoreError("\(path):\(number): expected {\"id\": int, \"text\": string}")
            }
            ids.append(id)
            texts.append(text)
        }
        let settings = MinHashSettings(threshold: threshold, permutations: permutations, shingling: .words(ngram))
        if let problem = settings.problem { throw CoreError(problem) }
        let start = DispatchTime.now().uptimeNanoseconds
        let deduplicator = MinHashDeduplicator(settings: settings)
        let kept = deduplicator.keptMembers(texts)
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        let dropped = kept.indices.filter { kept[$0] != $0 }.map { ids[$0] }
        print("{\"seconds\": \(seconds), \"docs_per_second\": \(Double(texts.count) / seconds), \"bands\": \(deduplicator.bands.bands), "
              + "\"rows\": \(deduplicator.bands.rows), \"dropped\": [\(dropped.map(String.init).joined(separator: ", "))]}")
    }
}
