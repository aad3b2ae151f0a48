import Foundation

/// FNV-1a, 64-bit: stable across runs, processes and platforms (unlike `hashValue`). The one
/// implementation behind prompt hashes, dataset splits, MinHash shingles and model hashes.
public struct StableHasher: Sendable {
    /// FNV-1a's 64-bit offset basis.
    public static let offsetBasis: UInt64 = 0xCBF2_9CE4_8422_2325
    /// FNV-1a's 64-bit prime.
    public static let prime: UInt64 = 0x0000_0100_0000_01B3

    /// The hash of everything combined so far.
    public private(set) var value: UInt64

    /// Starts from the offset basis, optionally mixed with a seed (`basis ^ seed`).
    public init(seed: UInt64 = 0) { value = Self.offsetBasis ^ seed }

    /// Mixes one byte.
    @inline(__always)
    public mutating func combine(byte: UInt8) {
        value ^= UInt64(byte)
        value = value &* Self.prime
    }

    /// Mixes a whole 64-bit word in one FNV round (used for token ids).
    @inline(__always)
    public mutating func combine(word: UInt64) {
        value ^= word
        value = value &* Self.prime
    }

    /// Mixes every byte of `buffer`.
    public mutating func combine(bytes buffer: UnsafeRawBufferPointer) {
        for byte in buffer { combine(byte: byte) }
    }

    /// Mixes the UTF-8 bytes of `text`.
    public mutating func combine(_ text: String) {
        for byte in text.utf8 { combine(byte: byte) }
    }

    /// `value` as 16 lower-case hex digits.
    public var hex: String { String(format: "%016llx", value) }
}

/// One-shot FNV-1a of a string.
public enum StableHash {
    /// The 64-bit hash of `text`'s UTF-8 bytes.
    public static func value(_ text: String) -> UInt64 { hasher(text).value }

    /// The same as 16 lower-case hex digits.
    public static func hex(_ text: String) -> String { hasher(text).hex }

    private static func hasher(_ text: String) -> StableHasher {
        var hasher = StableHasher()
        hasher.combine(text)
        return hasher
    }
}
