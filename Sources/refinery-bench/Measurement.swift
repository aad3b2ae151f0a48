import Foundation
import RefineryModel

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("refinery-bench: \(message)\n".utf8))
    exit(2)
}

func peakResidentMegabytes() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return Double(usage.ru_maxrss) / 1024
}

func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }

/// GFLOP/s of `product` (`flops` each run): one warm-up run, then the median of `iterations`.
func gflops(flops: Double, iterations: Int, _ product: () -> Void) -> (gflops: Double, seconds: Double) {
    product()
    var seconds: [Double] = []
    for _ in 0..<max(iterations, 1) {
        let start = DispatchTime.now().uptimeNanoseconds
        product()
        seconds.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
    }
    let middle = median(seconds)
    return (flops / middle / 1e9, middle)
}

/// The products' precision: `BENCH_DTYPE` (auto, float32, bfloat16; default float32).
func benchDType() throws -> DTypeChoice {
    try DTypeChoice(parsing: ProcessInfo.processInfo.environment["BENCH_DTYPE"] ?? "float32", source: "BENCH_DTYPE")
}
