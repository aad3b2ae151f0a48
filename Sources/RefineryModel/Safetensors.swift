import Foundation
import RefineryCore
import RefineryTensor
import RefineryText

/// Element types found in safetensors checkpoints. Refinery reads the floating-point ones as
/// weights; integer and boolean tensors (BERT's `position_ids` buffer, for one) are accepted in a
/// file and never read as weights.
public enum SafetensorsDType: String, Sendable {
    case f32 = "F32", f16 = "F16", bf16 = "BF16"
    case f64 = "F64", i64 = "I64", i32 = "I32", i16 = "I16", i8 = "I8", u8 = "U8", bool = "BOOL"

    /// Bytes per element.
    public var size: Int {
        switch self {
        case .f64, .i64: return 8
        case .f32, .i32: return 4
        case .f16, .bf16, .i16: return 2
        case .i8, .u8, .bool: return 1
        }
    }

    /// True for the types Refinery reads as weights (F32, F16, BF16).
    public var isWeightType: Bool { self == .f32 || self == .f16 || self == .bf16 }
}

/// One tensor's entry in a safetensors header.
public struct SafetensorsEntry: Sendable, Equatable {
    public let name: String
    public let dtype: SafetensorsDType
    public let shape: [Int]
    /// Byte range in the data section (after the header).
    public let begin: Int
    public let end: Int
}

/// A safetensors file, memory-mapped, with its header validated.
///
/// The header is checked completely before any tensor is read: valid JSON object, known dtypes,
/// non-negative shapes, offsets inside the file, sizes that match shape × dtype, and no two
/// tensors sharing bytes.
public final class SafetensorsFile: @unchecked Sendable {
    /// The mapped file.
    public let file: MappedFile
    /// Entries by tensor name.
    public let entries: [String: SafetensorsEntry]
    /// `__metadata__`, if any.
    public let metadata: [String: String]
    private let dataStart: Int

    /// Largest header accepted (the reference implementation's limit).
    public static let maxHeaderSize = 100_000_000

    /// Opens and validates `path`.
    public init(path: String) throws {
        file = try MappedFile(path: path)
        let parsed = try Self.parseHeader(file.bytes, path: path)
        entries = parsed.entries
        metadata = parsed.metadata
        dataStart = parsed.dataStart
    }

    /// Validates a safetensors header held in `bytes` (the whole file). Used by `init` and the fuzz test.
    public static func parseHeader(_ bytes: UnsafeRawBufferPointer, path: String) throws
        -> (entries: [String: SafetensorsEntry], metadata: [String: String], dataStart: Int)
    {
        func fail(_ reason: String) -> ModelError {
            ModelError("\(path) is not a valid safetensors file: \(reason). Re-download or re-save the checkpoint.")
        }
        guard bytes.count >= 8 else { throw fail("it is \(bytes.count) bytes long, shorter than the 8-byte header length") }
        var headerLength: UInt64 = 0
        for i in 0..<8 { headerLength |= UInt64(bytes[i]) << (8 * UInt64(i)) }
        guard headerLength <= UInt64(maxHeaderSize) else { throw fail("header length \(headerLength) exceeds \(maxHeaderSize) bytes") }
        guard headerLength <= UInt64(bytes.count - 8) else {
            throw fail("header length \(headerLength) runs past the end of the file (\(bytes.count) bytes)")
        }
        let headerEnd = 8 + Int(headerLength)
        let header: JSONValue
        do {
            header = try JSONValue.parse(bytes: Array(bytes[8..<headerEnd]))
        } catch {
            throw fail("its header is not valid JSON (\(error))")
        }
        guard let pairs = header.objectValue else { throw fail("its header is not a JSON object") }
        let dataSize = bytes.count - headerEnd
        var entries: [String: SafetensorsEntry] = [:]
        var metadata: [String: String] = [:]
        for (name, value) in pairs {
            if name == "__metadata__" {
                guard let items = value.objectValue else { throw fail("__metadata__ is not an object") }
                for (k, v) in items {
                    guard let s = v.stringValue else { throw fail("__metadata__ value for \"\(k)\" is not a string") }
                    metadata[k] = s
                }
                continue
            }
            guard value.objectValue != nil else { throw fail("entry \"\(name)\" is not an object") }
            guard let dtypeName = value["dtype"]?.stringValue else { throw fail("tensor \"\(name)\" has no dtype") }
            guard let dtype = SafetensorsDType(rawValue: dtypeName) else {
                throw fail("tensor \"\(name)\" has dtype \(dtypeName); safetensors types are F64, F32, F16, BF16, I64, I32, I16, I8, U8 and BOOL")
            }
            guard let shapeValues = value["shape"]?.arrayValue else { throw fail("tensor \"\(name)\" has no shape") }
            var shape: [Int] = []
            var elements = 1
            for dimension in shapeValues {
                guard case let .int(d) = dimension, d >= 0 else { throw fail("tensor \"\(name)\" has an invalid dimension \(dimension.compactText)") }
                shape.append(d)
                let (product, overflow) = elements.multipliedReportingOverflow(by: d)
                guard !overflow, product <= Int(Int32.max) * 64 else { throw fail("tensor \"\(name)\" is impossibly large") }
                elements = product
            }
            guard let offsets = value["data_offsets"]?.arrayValue, offsets.count == 2,
                  case let .int(begin) = offsets[0], case let .int(end) = offsets[1] else {
                throw fail("tensor \"\(name)\" needs data_offsets [begin, end] of integers")
            }
            guard begin >= 0, end >= begin else { throw fail("tensor \"\(name)\" has data_offsets [\(begin), \(end)] out of order") }
            guard end <= dataSize else {
                throw fail("tensor \"\(name)\" has data_offsets [\(begin), \(end)] past the end of the data (\(dataSize) bytes)")
            }
            guard end - begin == elements * dtype.size else {
                throw fail("tensor \"\(name)\" of shape \(shape) \(dtypeName) needs \(elements * dtype.size) bytes but data_offsets give \(end - begin)")
            }
            entries[name] = SafetensorsEntry(name: name, dtype: dtype, shape: shape, begin: begin, end: end)
        }
        let sorted = entries.values.filter { $0.end > $0.begin }.sorted { $0.begin < $1.begin }
        for (a, b) in zip(sorted, sorted.dropFirst()) where b.begin < a.end {
            throw fail("tensors \"\(a.name)\" and \"\(b.name)\" overlap (bytes \(a.begin)..<\(a.end) and \(b.begin)..<\(b.end))")
        }
        return (entries, metadata, headerEnd)
    }

    /// Names of the tensors, sorted.
    public var names: [String] { entries.keys.sorted() }

    /// Reads tensor `name` converted to Float32.
    public func tensor(_ name: String) throws -> Tensor {
        guard let entry = entries[name] else { throw ModelError("\(file.path) has no tensor \"\(name)\"") }
        guard entry.dtype.isWeightType else {
            throw ModelError("\(file.path): tensor \"\(name)\" is \(entry.dtype.rawValue); Refinery reads weights stored as F32, F16 or BF16")
        }
        let result = Tensor(zeros: entry.shape)
        let count = result.count
        guard count > 0, let base = file.base else { return result }
        let source = base + dataStart + entry.begin
        let destination = result.pointer
        switch entry.dtype {
        case .f32:
            UnsafeMutableRawPointer(destination).copyMemory(from: source, byteCount: count * 4)
        case .bf16:
            let d = SendablePointer(destination)
            let s = SendablePointer(UnsafeMutablePointer(mutating: source.assumingMemoryBound(to: UInt16.self)))
            Parallel.forEach(count, costPerItem: 1) { range in
                for i in range { d.pointer[i] = HalfPrecision.bfloat16ToFloat(UnsafeRawPointer(s.pointer + i).loadUnaligned(as: UInt16.self)) }
            }
        case .f64, .i64, .i32, .i16, .i8, .u8, .bool:
            break
        case .f16:
            let d = SendablePointer(destination)
            let s = SendablePointer(UnsafeMutablePointer(mutating: source.assumingMemoryBound(to: UInt16.self)))
            Parallel.forEach(count, costPerItem: 2) { range in
                for i in range { d.pointer[i] = HalfPrecision.float16ToFloat(UnsafeRawPointer(s.pointer + i).loadUnaligned(as: UInt16.self)) }
            }
        }
        file.release(offset: dataStart + entry.begin, count: entry.end - entry.begin)
        return result
    }

    /// Reads tensor `name`'s bytes as they are stored, whatever its type.
    public func rawBytes(_ name: String) throws -> [UInt8] {
        guard let entry = entries[name] else { throw ModelError("\(file.path) has no tensor \"\(name)\"") }
        guard entry.end > entry.begin, let base = file.base else { return [] }
        return Array(UnsafeRawBufferPointer(start: base + dataStart + entry.begin, count: entry.end - entry.begin))
    }

    /// Gives the memory of tensor `name`'s bytes back to the system (they are read again from the
    /// file if touched): after copying a tensor out, so the mapping does not count twice.
    public func releaseTensor(_ name: String) {
        guard let entry = entries[name] else { return }
        file.release(offset: dataStart + entry.begin, count: entry.end - entry.begin)
    }

    /// Reads a BF16 tensor's bits as they are stored.
    func bfloat16Bits(_ name: String) throws -> BFloat16Storage {
        guard let entry = entries[name], entry.dtype == .bf16 else { throw ModelError("\(file.path) has no BF16 tensor \"\(name)\"") }
        let count = entry.shape.reduce(1, *)
        let result = BFloat16Storage(uninitializedCount: count)
        if count > 0, let base = file.base {
            UnsafeMutableRawPointer(result.pointer).copyMemory(from: base + dataStart + entry.begin, byteCount: count * 2)
            file.release(offset: dataStart + entry.begin, count: count * 2)
        }
        return result
    }

    /// The dtype of tensor `name`, or nil.
    public func dtype(of name: String) -> SafetensorsDType? { entries[name]?.dtype }
}

/// Writes safetensors files (header padded to 8 bytes, tensors in name order), atomically.
public enum SafetensorsWriter {
    /// Writes `tensors` to `path` in `dtype`, via a temporary file renamed into place.
    public static func write(_ tensors: [(String, Tensor)], to path: String, dtype: SafetensorsDType = .f32,
                             metadata: [String: String] = ["format": "pt"]) throws {
        guard dtype.isWeightType else { throw ModelError("cannot write weights as \(dtype.rawValue): use F32, F16 or BF16") }
        let ordered = tensors.sorted { $0.0 < $1.0 }
        try write(layout: ordered.map { ($0.0, dtype, $0.1.shape) }, to: path, metadata: metadata) { index, data in
            let tensor = ordered[index].1
            switch dtype {
            case .bf16:
                var buffer = [UInt16](repeating: 0, count: tensor.count)
                for i in 0..<tensor.count { buffer[i] = HalfPrecision.floatToBFloat16(tensor.pointer[i]).littleEndian }
                buffer.withUnsafeBytes { data.append(contentsOf: $0) }
            case .f16:
                var buffer = [UInt16](repeating: 0, count: tensor.count)
                for i in 0..<tensor.count { buffer[i] = HalfPrecision.floatToFloat16(tensor.pointer[i]).littleEndian }
                buffer.withUnsafeBytes { data.append(contentsOf: $0) }
            default:
                data.append(UnsafeBufferPointer(start: tensor.pointer, count: tensor.count))
            }
        }
    }

    /// One tensor whose bytes are made only when the writer reaches it (`bytes()`, `shape` ×
    /// `dtype.size` of them): a large file is written without holding all of it at once.
    public struct LazyEntry: @unchecked Sendable {
        public let name: String, dtype: SafetensorsDType, shape: [Int], bytes: () -> Data
        public init(name: String, dtype: SafetensorsDType, shape: [Int], bytes: @escaping () -> Data) {
            self.name = name
            self.dtype = dtype
            self.shape = shape
            self.bytes = bytes
        }
    }

    /// Writes tensors whose bytes are made as the writer reaches each one, via a temporary file
    /// renamed into place; a tensor whose bytes do not fit its shape fails the write (nothing is left).
    public static func write(lazy entries: [LazyEntry], to path: String, metadata: [String: String] = ["format": "pt"]) throws {
        let ordered = entries.sorted { $0.name < $1.name }
        var mismatch: String?
        try write(layout: ordered.map { ($0.name, $0.dtype, $0.shape) }, to: path, metadata: metadata) { index, data in
            let entry = ordered[index], bytes = entry.bytes()
            if bytes.count != entry.shape.reduce(1, *) * entry.dtype.size, mismatch == nil {
                mismatch = "\(entry.name) has \(bytes.count) bytes for shape \(entry.shape) of \(entry.dtype.rawValue)"
            }
            data.append(bytes)
        }
        if let mismatch {
            try? FileManager.default.removeItem(atPath: path)
            throw ModelError("cannot write \(path): \(mismatch)")
        }
    }

    /// The header of `layout` (in that order), then each tensor's bytes as `append(index, &data)`
    /// adds them, written to `path` atomically.
    private static func write(layout: [(name: String, dtype: SafetensorsDType, shape: [Int])], to path: String,
                              metadata: [String: String], append: (Int, inout Data) -> Void) throws {
        var headerPairs: [(String, JSONValue)] = []
        if !metadata.isEmpty {
            headerPairs.append(("__metadata__", .object(metadata.sorted { $0.key < $1.key }.map { ($0.key, .string($0.value)) })))
        }
        var offset = 0
        for (name, dtype, shape) in layout {
            let size = shape.reduce(1, *) * dtype.size
            headerPairs.append((name, .object([
                ("dtype", .string(dtype.rawValue)),
                ("shape", .array(shape.map { .int($0) })),
                ("data_offsets", .array([.int(offset), .int(offset + size)])),
            ])))
            offset += size
        }
        var header = Array(JSONValue.object(headerPairs).compactText.utf8)
        while header.count % 8 != 0 { header.append(0x20) }
        // Streamed to a temporary file one tensor at a time (a file of many gigabytes never sits
        // in memory whole), then renamed into place.
        let temporary = path + ".partial-\(getpid())"
        FileManager.default.createFile(atPath: temporary, contents: nil)
        do {
            let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: temporary))
            defer { try? handle.close() }
            var length = UInt64(header.count).littleEndian
            var first = Data()
            withUnsafeBytes(of: &length) { first.append(contentsOf: $0) }
            first.append(contentsOf: header)
            try handle.write(contentsOf: first)
            for index in layout.indices {
                var data = Data()
                append(index, &data)
                try handle.write(contentsOf: data)
            }
            try handle.synchronize()
            if rename(temporary, path) != 0 { throw ModelError(String(cString: strerror(errno))) }
        } catch {
            try? FileManager.default.removeItem(atPath: temporary)
            throw ModelError("cannot write \(path): \((error as? ModelError)?.message ?? error.localizedDescription)")
        }
    }
}
