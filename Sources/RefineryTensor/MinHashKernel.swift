import CRefineryKernels

/// The MinHash signature kernel (`CRefineryKernels/minhash.c`, vectorised per instruction set).
public enum MinHashKernel {
    /// Writes `out[i] = min over shingles x of (a[i]·x + b[i] mod 2⁶⁴) >> 32` for `i < a.count`
    /// (`UInt32.max` everywhere when there are no shingles).
    public static func signature(_ shingles: [UInt32], a: [UInt64], b: [UInt64], into out: UnsafeMutablePointer<UInt32>) {
        precondition(a.count == b.count, "one offset per multiplier")
        shingles.withUnsafeBufferPointer { s in
            a.withUnsafeBufferPointer { a in
                b.withUnsafeBufferPointer { b in
                    rk_minhash(s.baseAddress, s.count, a.baseAddress, b.baseAddress, a.count, out)
                }
            }
        }
    }
}
