import Foundation
import RefineryCore
import RefineryTensor

/// An on-disk copy of a checkpoint's projections in NF4 (`--nf4-cache DIR`): QLoRA quantizes the
/// base as it reads it; with a cache, the first load writes the quantized matrices to
/// `DIR/nf4-FINGERPRINT.safetensors` and later loads read those ~4.1 bits per value instead of the
/// checkpoint's 16 or 32 (and skip quantizing). Quantization is deterministic, so a cached matrix
/// is the same bits a fresh one would be. The file is keyed by the checkpoint's fingerprint (its
/// files' names, sizes, times and headers): a changed checkpoint never reads a stale cache.
///
/// Per matrix NAME: `NAME.codes` (U8, two 4-bit codes per byte), `NAME.absmax_codes` (U8),
/// `NAME.absmax_scales` (F32), `NAME.offset` (F32 [1]) and `NAME.shape` (I64 [2]).
public struct NF4Cache: Sendable {
    /// The folder holding cache files.
    public let directory: URL
    /// The file layout's version, in the file's metadata.
    static let format = "refinery-nf4-v1"

    public init(directory: URL) {
        self.directory = directory
    }

    /// The cache file for `checkpoint`.
    public func file(for checkpoint: Checkpoint) -> URL {
        directory.appendingPathComponent("nf4-\(checkpoint.fingerprint).safetensors")
    }

    /// The cached matrices of `checkpoint` by weight name, or nil when there is no cache file.
    /// A file that is not a complete cache of this layout is refused with its path (delete it to
    /// quantize again).
    public func load(for checkpoint: Checkpoint) throws -> [String: NF4Matrix]? {
        let url = file(for: checkpoint)
        guard FileManager.default.fileExists(atPath: url.path) else { return nil }
        let file: SafetensorsFile
        do { file = try SafetensorsFile(path: url.path) } catch let error as ModelError {
            throw ModelError("the NF4 cache \(url.path) cannot be read (\(error.message)); delete it and the next load quantizes again")
        }
        guard file.metadata["format"] == Self.format else {
            throw ModelError("\(url.path) is not a Refinery NF4 cache (\(Self.format)); delete it and the next load quantizes again")
        }
        var matrices: [String: NF4Matrix] = [:]
        for name in file.names where name.hasSuffix(".codes") {
            let weight = String(name.dropLast(".codes".count))
            do {
                let shape = try RawValues.decode(file.rawBytes(weight + ".shape"), as: Int64.self, name: weight + ".shape").map { Int($0) }
                let offset = try RawValues.decode(file.rawBytes(weight + ".offset"), as: Float.self, name: weight + ".offset")
                guard offset.count == 1 else { throw ModelError("\(weight).offset holds \(offset.count) values") }
                matrices[weight] = try NF4Matrix(shape: shape, codes: try file.rawBytes(name), absmaxCodes: try file.rawBytes(weight + ".absmax_codes"),
                                                 absmaxScales: try RawValues.decode(file.rawBytes(weight + ".absmax_scales"), as: Float.self,
                                                                                    name: weight + ".absmax_scales"),
                                                 offset: offset[0])
            } catch {
                throw ModelError("\(url.path) is damaged at \(weight) (\(error)); delete it and the next load quantizes again")
            }
            for suffix in [".codes", ".absmax_codes", ".absmax_scales"] { file.releaseTensor(weight + suffix) }
        }
        return matrices
    }

    /// Writes `matrices` as the cache of `checkpoint` (streamed to a temporary file, renamed into place).
    public func store(_ matrices: [(String, NF4Matrix)], for checkpoint: Checkpoint) throws {
        do {
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        } catch {
            throw ModelError("cannot create the NF4 cache folder \(directory.path): \(error.localizedDescription)")
        }
        var entries: [SafetensorsWriter.LazyEntry] = []
        for (name, matrix) in matrices {
            entries.append(.init(name: name + ".codes", dtype: .u8, shape: [matrix.codes.count]) { matrix.codes.withUnsafeBytes { Data($0) } })
            entries.append(.init(name: name + ".absmax_codes", dtype: .u8, shape: [matrix.absmaxCodes.count]) {
                matrix.absmaxCodes.withUnsafeBytes { Data($0) }
            })
            entries.append(.init(name: name + ".absmax_scales", dtype: .f32, shape: [matrix.absmaxScales.count]) {
                matrix.absmaxScales.withUnsafeBytes { Data($0) }
            })
            entries.append(.init(name: name + ".offset", dtype: .f32, shape: [1]) { withUnsafeBytes(of: matrix.offset) { Data($0) } })
            entries.append(.init(name: name + ".shape", dtype: .i64, shape: [2]) { matrix.shape.map { Int64($0) }.withUnsafeBytes { Data($0) } })
        }
        try SafetensorsWriter.write(lazy: entries, to: file(for: checkpoint).path, metadata: ["format": Self.format])
    }
}
