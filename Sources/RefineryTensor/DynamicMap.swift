import CRefineryKernels

/// bitsandbytes' dynamic 8-bit data type (`create_dynamic_map`, 7 exponent bits; Dettmers,
/// "8-Bit Approximations for Parallelism in Deep Learning"): 256 sorted float32 values in
/// [-1, 1] with a dynamic exponent, densest near zero. QLoRA codes its absmax statistics with
/// the signed map; 8-bit AdamW codes the first moment with the signed map and the second (never
/// negative) with the unsigned one.
public enum DynamicMap {
    /// For each decade 10⁻⁶…10⁰, the means of consecutive points of `linspace(0.1, 1, 2ᵉ + 1)`
    /// times the decade, positive and negative; then 0 and 1.
    public static let signed: [Float] = make(signed: true)
    /// As `signed` with twice the points per decade (`linspace(0.1, 1, 2ᵉ⁺¹ + 1)`) and no negatives.
    public static let unsigned: [Float] = make(signed: false)
    /// `(map[i] + map[i+1]) / 2` in float32: a value codes to the number of midpoints below it.
    public static let signedMidpoints: [Float] = midpoints(signed)
    public static let unsignedMidpoints: [Float] = midpoints(unsigned)

    /// The signed map with its code table, for the 8-bit optimizer kernel.
    static let signedCodeMap = CodeMap(levels: signed)
    /// The unsigned map with its code table.
    static let unsignedCodeMap = CodeMap(levels: unsigned)

    /// The map, with torch's float32 linspace (step in float32, each point one fused
    /// multiply-add from the nearer end), sorted.
    private static func make(signed: Bool) -> [Float] {
        var values: [Float] = [0, 1]
        for exponent in 0..<7 {
            let steps = (1 << (signed ? exponent : exponent + 1)) + 1
            let start: Float = 0.1, end: Float = 1
            let step = (end - start) / Float(steps - 1)
            let points = (0..<steps).map { i -> Float in
                i < steps / 2 ? start.addingProduct(step, Float(i)) : end.addingProduct(-step, Float(steps - 1 - i))
            }
            let decade = Float(pow10(exponent - 6))
            for i in 0..<(steps - 1) {
                let mean = (points[i] + points[i + 1]) / 2
                values.append(decade * mean)
                if signed { values.append(-decade * mean) }
            }
        }
        return values.sorted()
    }

    /// `(levels[i] + levels[i+1]) / 2` in float32.
    static func midpoints(_ levels: [Float]) -> [Float] {
        (0..<(levels.count - 1)).map { (levels[$0] + levels[$0 + 1]) / 2 }
    }

    private static func pow10(_ exponent: Int) -> Double {
        var result = 1.0
        for _ in 0..<abs(exponent) { result *= 10 }
        return exponent < 0 ? 1 / result : result
    }
}

/// A 256-level map, its midpoints and its code table (`rk_code_table`) in memory that lives as
/// long as the process (the instances are static), handed to C kernels as one `rk_code_map`.
final class CodeMap: @unchecked Sendable {
    let map: rk_code_map

    init(levels: [Float]) {
        precondition(levels.count == 256, "CodeMap: \(levels.count) levels")
        let midpoints = DynamicMap.midpoints(levels)
        let values = UnsafeMutablePointer<Float>.allocate(capacity: levels.count)
        values.initialize(from: levels, count: levels.count)
        let middle = UnsafeMutablePointer<Float>.allocate(capacity: 256)
        middle.initialize(from: midpoints + [.infinity], count: 256)
        let entries = 2 * Int(RK_CODE_TABLE_HALF)
        let low = UnsafeMutablePointer<UInt8>.allocate(capacity: entries), high = UnsafeMutablePointer<UInt8>.allocate(capacity: entries)
        let widest = rk_code_table(middle, midpoints.count, low, high)
        // The kernels decide between two codes per bucket; the dynamic maps need no more.
        precondition(widest <= 1, "CodeMap: a table bucket holds \(widest) midpoints")
        map = rk_code_map(values: values, midpoints: middle, low: low, high: high)
    }

    /// The code of `value` (in [-1, 1]) through the table.
    func tableCode(_ value: Float) -> Int { withUnsafePointer(to: map) { rk_table_code(value, $0) } }

    /// The code of `value` by binary search over the midpoints (the definition the table must equal).
    func searchedCode(_ value: Float) -> Int { rk_nearest_code(value, map.midpoints, 255) }
}
