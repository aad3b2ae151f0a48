import Foundation

/// TensorBoard's event files, written without TensorFlow: TFRecord framing (a little-endian
/// 64-bit length, its masked CRC-32C, the bytes, their masked CRC-32C) around `Event` protocol
/// buffers (tensorflow/core/util/event.proto): `wall_time` (1, double), `step` (2, int64),
/// `file_version` (3, string) and `summary` (5) holding `Summary.Value`s of `tag` (1) and
/// `simple_value` (2, float) — the scalars TensorBoard's scalar dashboard reads.
public enum TensorBoardEvents {
    /// The first event of every file.
    public static func fileVersion(wallTime: Double) -> [UInt8] {
        var event = [UInt8]()
        event.append(0x09)
        event += littleEndian(wallTime.bitPattern)
        event.append(0x1A)
        let version = Array("brain.Event:2".utf8)
        event += varint(UInt64(version.count)) + version
        return event
    }

    /// An event holding `scalars` (tag, value) at `step`.
    public static func scalars(_ scalars: [(tag: String, value: Float)], step: Int, wallTime: Double) -> [UInt8] {
        var summary = [UInt8]()
        for (tag, value) in scalars {
            let tagBytes = Array(tag.utf8)
            var item = [UInt8]([0x0A]) + varint(UInt64(tagBytes.count)) + tagBytes
            item.append(0x15)
            item += littleEndian(value.bitPattern)
            summary += [0x0A] + varint(UInt64(item.count)) + item
        }
        var event = [UInt8]([0x09]) + littleEndian(wallTime.bitPattern)
        if step != 0 { event += [0x10] + varint(UInt64(bitPattern: Int64(step))) }  // proto3 leaves a zero out
        event += [0x2A] + varint(UInt64(summary.count)) + summary
        return event
    }

    /// `data` framed as one TFRecord.
    public static func record(_ data: [UInt8]) -> [UInt8] {
        let length = littleEndian(UInt64(data.count))
        return length + littleEndian(maskedCRC32C(length)) + data + littleEndian(maskedCRC32C(data))
    }

    /// CRC-32C (Castagnoli), masked as TFRecord stores it.
    public static func maskedCRC32C(_ bytes: [UInt8]) -> UInt32 {
        let crc = crc32c(bytes)
        return ((crc >> 15) | (crc << 17)) &+ 0xA282_EAD8
    }

    /// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78).
    public static func crc32c(_ bytes: [UInt8]) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in bytes { crc = table[Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc >> 8) }
        return crc ^ 0xFFFF_FFFF
    }

    private static let table: [UInt32] = (0..<256).map { index in
        var value = UInt32(index)
        for _ in 0..<8 { value = value & 1 == 1 ? (value >> 1) ^ 0x82F6_3B78 : value >> 1 }
        return value
    }

    static func varint(_ value: UInt64) -> [UInt8] {
        var rest = value, bytes: [UInt8] = []
        repeat {
            let low = UInt8(rest & 0x7F)
            rest >>= 7
            bytes.append(rest == 0 ? low : low | 0x80)
        } while rest != 0
        return bytes
    }

    static func littleEndian<T: FixedWidthInteger>(_ value: T) -> [UInt8] {
        withUnsafeBytes(of: value.littleEndian) { Array($0) }
    }
}

/// An event file TensorBoard opens while it grows: `events.out.tfevents.<seconds>.<host>` in a
/// folder, the version event first, then one record per `write`, each flushed to the file.
public final class TensorBoardEventFile: @unchecked Sendable {
    public let url: URL
    private let handle: FileHandle
    private let lock = NSLock()

    /// Creates a new event file in `directory` (made if missing).
    public init(directory: URL, wallTime: Double = Date().timeIntervalSince1970) throws {
        do {
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        } catch {
            throw CoreError("cannot create the TensorBoard folder \(directory.path): \(error.localizedDescription)")
        }
        let host = ProcessInfo.processInfo.hostName.split(separator: ".").first.map(String.init) ?? "localhost"
        url = directory.appendingPathComponent("events.out.tfevents.\(Int(wallTime)).\(host).\(getpid())")
        guard FileManager.default.createFile(atPath: url.path, contents: Data(TensorBoardEvents.record(TensorBoardEvents.fileVersion(wallTime: wallTime)))),
              let handle = FileHandle(forWritingAtPath: url.path) else {
            throw CoreError("cannot create the TensorBoard event file \(url.path)")
        }
        handle.seekToEndOfFile()
        self.handle = handle
    }

    deinit { try? handle.close() }

    /// Appends one event of `scalars` at `step`.
    public func write(_ scalars: [(tag: String, value: Float)], step: Int, wallTime: Double = Date().timeIntervalSince1970) throws {
        lock.lock()
        defer { lock.unlock() }
        do {
            try handle.write(contentsOf: Data(TensorBoardEvents.record(TensorBoardEvents.scalars(scalars, step: step, wallTime: wallTime))))
        } catch {
            throw CoreError("cannot write the TensorBoard event file \(url.path): \(error.localizedDescription)")
        }
    }
}
