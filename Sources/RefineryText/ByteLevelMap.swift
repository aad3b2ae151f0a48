/// GPT-2's reversible byte ↔ visible-character table used by byte-level BPE.
public enum ByteLevelMap {
    /// The character standing for each byte value.
    public static let byteToScalar: [Unicode.Scalar] = {
        var printable: [Int] = Array(33...126) + Array(161...172) + Array(174...255)
        var mapped = printable
        var extra = 0
        for byte in 0..<256 where !printable.contains(byte) {
            printable.append(byte)
            mapped.append(256 + extra)
            extra += 1
        }
        var table = [Unicode.Scalar](repeating: "\0", count: 256)
        for (byte, code) in zip(printable, mapped) {
            // Codes are below 0x200: always valid scalars.
            table[byte] = Unicode.Scalar(UInt32(code)) ?? "?"
        }
        return table
    }()

    /// The byte each table character stands for.
    public static let scalarToByte: [Unicode.Scalar: UInt8] = {
        var result: [Unicode.Scalar: UInt8] = [:]
        for (byte, scalar) in byteToScalar.enumerated() { result[scalar] = UInt8(byte) }
        return result
    }()
}
