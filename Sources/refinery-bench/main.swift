import Foundation
import RefineryModel
import RefineryTensor

// Measures Refinery's forward-pass throughput on a model folder; bench/forward.sh runs it side
// by side with PyTorch. Usage: refinery-bench forward MODEL_DIR [SEQ_LEN] [ITERATIONS]
// Prints one JSON line: {"tokens_per_second_median":…, "seconds":[…], "threads":…}.

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("refinery-bench: \(message)\n".utf8))
    exit(2)
}

let arguments = CommandLine.arguments
guard arguments.count >= 3, arguments[1] == "forward" else {
    fail("usage: refinery-bench forward MODEL_DIR [SEQ_LEN] [ITERATIONS]")
}
let sequenceLength = arguments.count > 3 ? Int(arguments[3]) ?? 512 : 512
let iterations = arguments.count > 4 ? Int(arguments[4]) ?? 5 : 5
let model: LlamaModel
do { model = try LlamaModel(directory: URL(fileURLWithPath: arguments[2])) } catch { fail("\(error)") }
var generator = SystemRandomNumberGenerator()
let tokens = (0..<sequenceLength).map { _ in Int.random(in: 0..<model.config.vocabSize, using: &generator) }
do {
    _ = try model.forward(tokens: tokens)  // warm-up
    var seconds: [Double] = []
    for _ in 0..<iterations {
        let start = DispatchTime.now().uptimeNanoseconds
        let logits = try model.forward(tokens: tokens)
        let elapsed = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        if logits.pointer[0].isNaN { fail("NaN logits") }
        seconds.append(elapsed)
    }
    let median = seconds.sorted()[seconds.count / 2]
    let line = "{\"tokens_per_second_median\": \(Double(sequenceLength) / median), \"seconds\": \(seconds), \"threads\": \(Parallel.threadCount)}"
    print(line)
} catch {
    fail("\(error)")
}
