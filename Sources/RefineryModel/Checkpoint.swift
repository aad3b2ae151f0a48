import Foundation
import RefineryCore
import RefineryTensor
import RefineryText

/// The weights of a Hugging Face model folder: `model.safetensors`, or shards listed in
/// `model.safetensors.index.json`.
public final class Checkpoint: @unchecked Sendable {
    /// The folder.
    public let directory: URL
    private let files: [String: SafetensorsFile]
    private let location: [String: String]

    /// Opens the safetensors files of `directory` and validates all their headers.
    public init(directory: URL) throws {
        self.directory = directory
        let fm = FileManager.default
        let index = directory.appendingPathComponent("model.safetensors.index.json")
        var location: [String: String] = [:]
        var fileNames: [String] = []
        if fm.fileExists(atPath: index.path) {
            let json: JSONValue
            do { json = try JSONValue.parse(bytes: Array(try Data(contentsOf: index))) } catch {
                throw ModelError("\(index.path) is not valid JSON: \(error)")
            }
            guard let map = json["weight_map"]?.objectValue else {
                throw ModelError("\(index.path) has no \"weight_map\" object")
            }
            for (name, file) in map {
                guard let fileName = file.stringValue, !fileName.contains("/") else {
                    throw ModelError("\(index.path): weight_map entry \"\(name)\" does not name a file in the folder")
                }
                location[name] = fileName
            }
            fileNames = Array(Set(location.values)).sorted()
        } else if fm.fileExists(atPath: directory.appendingPathComponent("model.safetensors").path) {
            fileNames = ["model.safetensors"]
        } else {
            let all = (try? fm.contentsOfDirectory(atPath: directory.path)) ?? []
            // Shards without an index: model-00001-of-00002.safetensors … (never adapters or other files).
            fileNames = all.filter { $0.hasPrefix("model-") && $0.hasSuffix(".safetensors") }.sorted()
            if fileNames.isEmpty {
                throw ModelError("no safetensors weights in \(directory.path): expected model.safetensors or model.safetensors.index.json (PyTorch .bin checkpoints are not supported; convert with save_pretrained(safe_serialization=True))")
            }
        }
        var files: [String: SafetensorsFile] = [:]
        for fileName in fileNames {
            let path = directory.appendingPathComponent(fileName).path
            guard fm.fileExists(atPath: path) else {
                throw ModelError("\(path) is listed in model.safetensors.index.json but missing; re-download the checkpoint")
            }
            let file = try SafetensorsFile(path: path)
            files[fileName] = file
        }
        if !fm.fileExists(atPath: index.path) {
            for (fileName, file) in files { for name in file.entries.keys { location[name] = fileName } }
        }
        self.files = files
        self.location = location
    }

    /// All tensor names.
    public var names: [String] { location.keys.sorted() }

    /// Identifies these weights without reading them: a hash of every safetensors file's name,
    /// size, modification time and header (each tensor's name, type, shape and offsets). A file
    /// replaced or rewritten gets a new fingerprint.
    public var fingerprint: String {
        var hasher = StableHasher()
        for (fileName, file) in files.sorted(by: { $0.key < $1.key }) {
            hasher.combine(fileName)
            hasher.combine(word: UInt64(file.file.size))
            let attributes = try? FileManager.default.attributesOfItem(atPath: file.file.path)
            let modified = (attributes?[.modificationDate] as? Date)?.timeIntervalSince1970 ?? 0
            hasher.combine(word: UInt64(bitPattern: Int64((modified * 1_000_000).rounded())))
            for entry in file.entries.values.sorted(by: { $0.name < $1.name }) {
                hasher.combine("\(entry.name) \(entry.dtype.rawValue) \(entry.shape) \(entry.begin) \(entry.end)")
            }
        }
        return hasher.hex
    }

    /// The stored shape of `name`, or nil when the checkpoint lacks it.
    public func shape(of name: String) -> [Int]? {
        location[name].flatMap { files[$0]?.entries[name]?.shape }
    }

    /// True when the checkpoint holds `name`.
    public func contains(_ name: String) -> Bool { location[name] != nil }

    /// The stored dtype of the first tensor (what an export should write back).
    public var storedDType: SafetensorsDType {
        for name in names { if let fileName = location[name], let dtype = files[fileName]?.dtype(of: name), dtype.isWeightType { return dtype } }
        return .f32
    }

    /// Reads `name` as Float32, checking its shape.
    public func tensor(_ name: String, shape: [Int]) throws -> Tensor {
        guard let fileName = location[name], let file = files[fileName] else {
            throw ModelError("checkpoint \(directory.path) lacks tensor \"\(name)\" (expected shape \(shape)); is config.json from the same model?")
        }
        guard let entry = file.entries[name] else {
            throw ModelError("model.safetensors.index.json maps \"\(name)\" to \(fileName), but that file does not hold it")
        }
        guard entry.shape == shape else {
            throw ModelError("tensor \"\(name)\" has shape \(entry.shape) but config.json implies \(shape); the weights and config.json do not belong together")
        }
        return try file.tensor(name)
    }

    /// Reads `name` as a weight matrix for products in `dtype`, checking its shape. A bfloat16
    /// tensor read for bfloat16 products is copied as it is (no float32 step); `keepFloat` also
    /// keeps float32 values (a trained weight's master copy).
    public func matrix(_ name: String, shape: [Int], dtype: ComputeDType, keepFloat: Bool) throws -> WeightMatrix {
        if dtype == .bfloat16, !keepFloat, let fileName = location[name], let file = files[fileName],
           let entry = file.entries[name], entry.dtype == .bf16, entry.shape == shape {
            return WeightMatrix(bfloat16: try file.bfloat16Bits(name), shape: shape)
        }
        return WeightMatrix(try tensor(name, shape: shape), dtype: dtype, keepFloat: keepFloat)
    }
}
