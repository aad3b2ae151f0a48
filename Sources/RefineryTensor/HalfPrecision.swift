/// Conversions from the 16-bit float formats found in checkpoints to Float32.
public enum HalfPrecision {
    /// bfloat16 bits → Float32 (exact).
    @inline(__always)
    public static func bfloat16ToFloat(_ bits: UInt16) -> Float {
        Float(bitPattern: UInt32(bits) << 16)
    }

    /// Float32 → bfloat16 bits, rounding to nearest even (NaN stays NaN), as PyTorch does.
    @inline(__always)
    public static func floatToBFloat16(_ value: Float) -> UInt16 {
        let bits = value.bitPattern
        if value.isNaN { return UInt16(truncatingIfNeeded: (bits >> 16) | 0x40) }
        let rounding = 0x7FFF + ((bits >> 16) & 1)
        return UInt16(truncatingIfNeeded: (bits &+ rounding) >> 16)
    }

    /// IEEE binary16 bits → Float32 (exact, subnormals included).
    @inline(__always)
    public static func float16ToFloat(_ bits: UInt16) -> Float {
        let sign = UInt32(bits & 0x8000) << 16
        let exponent = UInt32(bits >> 10) & 0x1F
        let mantissa = UInt32(bits & 0x3FF)
        if exponent == 0 {
            if mantissa == 0 { return Float(bitPattern: sign) }
            let magnitude = Float(mantissa) * (1.0 / 16_777_216.0)  // 2^-24
            return sign != 0 ? -magnitude : magnitude
        }
        if exponent == 0x1F {
            return Float(bitPattern: sign | 0x7F80_0000 | (mantissa << 13))
        }
        return Float(bitPattern: sign | ((exponent + 112) << 23) | (mantissa << 13))
    }

    /// Float32 → IEEE binary16 bits (round to nearest even; overflow to infinity).
    public static func floatToFloat16(_ value: Float) -> UInt16 {
        #if arch(x86_64) || arch(arm64)
        return Float16(value).bitPattern
        #else
        fatalError("Float16 unavailable on this architecture")
        #endif
    }
}
