import Foundation

/// A GGUF metadata value (llama.cpp's file format, version 3).
public indirect enum GGUFValue: Sendable {
    case uint32(UInt32), int32(Int32), float32(Float), bool(Bool), string(String), uint64(UInt64)
    case array(GGUFArray)

    /// Arrays hold one element type.
    public enum GGUFArray: Sendable {
        case strings([String]), int32s([Int32]), float32s([Float])
    }

    var typeCode: UInt32 {
        switch self {
        case .uint32: return 4
        case .int32: return 5
        case .float32: return 6
        case .bool: return 7
        case .string: return 8
        case .array: return 9
        case .uint64: return 10
        }
    }
}

/// The GGML tensor types Refinery writes.
public enum GGMLType: UInt32, Sendable, CaseIterable {
    case f32 = 0, f16 = 1, q4_0 = 2, q8_0 = 8, bf16 = 30

    /// Values per block and bytes per block.
    var block: (values: Int, bytes: Int) {
        switch self {
        case .f32: return (1, 4)
        case .f16, .bf16: return (1, 2)
        case .q8_0: return (32, 34)
        case .q4_0: return (32, 18)
        }
    }
}

/// Writes a GGUF file: the header, metadata, tensor infos, then each tensor's data at a
/// 32-byte-aligned offset, streamed to a temporary file that replaces `path` only when complete.
public struct GGUFWriter {
    public struct TensorEntry {
        public var name: String
        /// PyTorch order (outermost first); GGUF stores it reversed.
        public var shape: [Int]
        public var type: GGMLType
        /// Produces the encoded bytes when the data is written.
        public var bytes: () throws -> [UInt8]

        public init(name: String, shape: [Int], type: GGMLType, bytes: @escaping () throws -> [UInt8]) {
            self.name = name
            self.shape = shape
            self.type = type
            self.bytes = bytes
        }

        var byteCount: Int {
            let values = shape.reduce(1, *)
            return values / type.block.values * type.block.bytes
        }
    }

    static let alignment = 32

    public static func write(metadata: [(String, GGUFValue)], tensors: [TensorEntry], to path: String) throws {
        for tensor in tensors where (tensor.shape.last ?? 0) % tensor.type.block.values != 0 {
            throw ModelError("\(tensor.name): rows of \(tensor.shape.last ?? 0) values cannot be stored as \(tensor.type) (blocks of \(tensor.type.block.values))")
        }
        var header = Data()
        header.append(contentsOf: Array("GGUF".utf8))
        append(UInt32(3), to: &header)
        append(UInt64(tensors.count), to: &header)
        append(UInt64(metadata.count), to: &header)
        for (key, value) in metadata {
            appendString(key, to: &header)
            append(value.typeCode, to: &header)
            appendValue(value, to: &header)
        }
        var offset = 0
        for tensor in tensors {
            appendString(tensor.name, to: &header)
            append(UInt32(tensor.shape.count), to: &header)
            for dimension in tensor.shape.reversed() { append(UInt64(dimension), to: &header) }
            append(tensor.type.rawValue, to: &header)
            append(UInt64(offset), to: &header)
            offset += padded(tensor.byteCount)
        }
        header.append(contentsOf: [UInt8](repeating: 0, count: padded(header.count) - header.count))

        let temporary = path + ".partial-\(getpid())"
        guard FileManager.default.createFile(atPath: temporary, contents: nil), let handle = FileHandle(forWritingAtPath: temporary) else {
            throw ModelError("cannot create \(temporary): check that the folder exists and is writable")
        }
        do {
            try handle.write(contentsOf: header)
            for tensor in tensors {
                let bytes = try tensor.bytes()
                guard bytes.count == tensor.byteCount else {
                    throw ModelError("\(tensor.name): \(bytes.count) bytes encoded, \(tensor.byteCount) expected")
                }
                try handle.write(contentsOf: bytes)
                try handle.write(contentsOf: [UInt8](repeating: 0, count: padded(bytes.count) - bytes.count))
            }
            try handle.close()
            if FileManager.default.fileExists(atPath: path) { try FileManager.default.removeItem(atPath: path) }
            try FileManager.default.moveItem(atPath: temporary, toPath: path)
        } catch {
            try? handle.close()
            try? FileManager.default.removeItem(atPath: temporary)
            if let error = error as? ModelError { throw error }
            throw ModelError("cannot write \(path): \(error.localizedDescription)")
        }
    }

    static func padded(_ count: Int) -> Int { (count + alignment - 1) / alignment * alignment }

    static func append<T: FixedWidthInteger>(_ value: T, to data: inout Data) {
        withUnsafeBytes(of: value.littleEndian) { data.append(contentsOf: $0) }
    }

    static func appendString(_ text: String, to data: inout Data) {
        append(UInt64(text.utf8.count), to: &data)
        data.append(contentsOf: Array(text.utf8))
    }

    static func appendValue(_ value: GGUFValue, to data: inout Data) {
        switch value {
        case let .uint32(v): append(v, to: &data)
        case let .int32(v): append(v, to: &data)
        case let .uint64(v): append(v, to: &data)
        case let .float32(v): append(v.bitPattern, to: &data)
        case let .bool(v): data.append(v ? 1 : 0)
        case let .string(v): appendString(v, to: &data)
        case let .array(array):
            switch array {
            case let .strings(values):
                append(UInt32(8), to: &data); append(UInt64(values.count), to: &data)
                for v in values { appendString(v, to: &data) }
            case let .int32s(values):
                append(UInt32(5), to: &data); append(UInt64(values.count), to: &data)
                for v in values { append(v, to: &data) }
            case let .float32s(values):
                append(UInt32(6), to: &data); append(UInt64(values.count), to: &data)
                for v in values { append(v.bitPattern, to: &data) }
            }
        }
    }
}

/// GGML's encodings of float32 rows: f16, bf16 (round to nearest even), and the block formats
/// Q8_0 (32 int8 with an f16 scale) and Q4_0 (32 4-bit values with an f16 scale), as llama.cpp's
/// reference quantizers compute them.
public enum GGMLEncoding {
    public static func encode(_ values: UnsafeBufferPointer<Float>, as type: GGMLType) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(values.count / type.block.values * type.block.bytes)
        switch type {
        case .f32:
            for v in values { withUnsafeBytes(of: v.bitPattern.littleEndian) { bytes.append(contentsOf: $0) } }
        case .f16:
            for v in values { withUnsafeBytes(of: Float16(v).bitPattern.littleEndian) { bytes.append(contentsOf: $0) } }
        case .bf16:
            for v in values { withUnsafeBytes(of: bfloat16(v).littleEndian) { bytes.append(contentsOf: $0) } }
        case .q8_0:
            for start in stride(from: 0, to: values.count, by: 32) {
                let block = values[start..<(start + 32)]
                let amax = block.map(abs).max() ?? 0
                let d = amax / 127
                let inverse = d != 0 ? 1 / d : 0
                withUnsafeBytes(of: Float16(d).bitPattern.littleEndian) { bytes.append(contentsOf: $0) }
                for v in block { bytes.append(UInt8(bitPattern: Int8((v * inverse).rounded(.toNearestOrAwayFromZero)))) }
            }
        case .q4_0:
            for start in stride(from: 0, to: values.count, by: 32) {
                let block = Array(values[start..<(start + 32)])
                // The value of largest magnitude, with its sign, maps to -8.
                var amax: Float = 0, signedMax: Float = 0
                for v in block where abs(v) > amax { amax = abs(v); signedMax = v }
                let d = signedMax / -8
                let inverse = d != 0 ? 1 / d : 0
                withUnsafeBytes(of: Float16(d).bitPattern.littleEndian) { bytes.append(contentsOf: $0) }
                func code(_ v: Float) -> UInt8 { UInt8(min(15, Int8(v * inverse + 8.5))) }
                for j in 0..<16 { bytes.append(code(block[j]) | code(block[j + 16]) << 4) }
            }
        }
        return bytes
    }

    /// bfloat16 bits of `value`, rounded to nearest even (NaN kept quiet).
    static func bfloat16(_ value: Float) -> UInt16 {
        let bits = value.bitPattern
        if value.isNaN { return UInt16(bits >> 16) | 0x40 }
        return UInt16((bits &+ 0x7FFF &+ ((bits >> 16) & 1)) >> 16)
    }
}
