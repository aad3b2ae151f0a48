/// Little-endian bytes read back as values (saved optimizer state, cache files).
enum RawValues {
    /// `raw` as values of `type`; refuses a byte count that is not whole values, naming `name`.
    static func decode<T: BitwiseCopyable>(_ raw: [UInt8], as type: T.Type, name: String) throws -> [T] {
        let size = MemoryLayout<T>.size
        guard raw.count % size == 0 else { throw ModelError("\(name) is not whole \(type) values (\(raw.count) bytes)") }
        return raw.withUnsafeBytes { buffer in
            (0..<(raw.count / size)).map { buffer.loadUnaligned(fromByteOffset: $0 * size, as: type) }
        }
    }
}
