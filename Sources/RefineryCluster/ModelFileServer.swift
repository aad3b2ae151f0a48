import Foundation

/// Serves the files of the base model folder in pieces to workers started with `--fetch-model`.
final class ModelFileServer {
    static let pieceSize = 4 << 20
    /// Files a worker needs to load the model and its tokenizer.
    static func isModelFile(_ name: String) -> Bool {
        name.hasSuffix(".safetensors") || name.hasSuffix(".json") || name.hasSuffix(".jinja") || name == "tokenizer.model"
    }

    /// A file name the model folder may hold: one path component, no `.`/`..`, no separators,
    /// no control characters. Anything else is refused on both sides of the wire.
    static func isPlainName(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.count <= 255 && name != "." && name != ".." && !name.hasPrefix(".")
            && !name.unicodeScalars.contains { $0 == "/" || $0 == "\\" || $0.value < 0x20 || $0.value == 0x7F }
    }

    let directory: String
    /// The files a worker may fetch, listed once: the model folder does not change during a run.
    let names: [String]

    init(directory: String) {
        self.directory = directory
        names = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [])
            .filter { ModelFileServer.isModelFile($0) && ModelFileServer.isPlainName($0) }.sorted()
    }

    /// The piece of `name` at `offset`, or (empty name) the list of files.
    func chunk(name: String, offset: UInt64) -> Refinery_Cluster_ModelFileChunk {
        var reply = Refinery_Cluster_ModelFileChunk()
        reply.name = name
        reply.offset = offset
        if name.isEmpty {
            reply.names = names
            return reply
        }
        guard names.contains(name) else {
            reply.error = "the coordinator's model folder has no file \(name)"
            return reply
        }
        let path = (directory as NSString).appendingPathComponent(name)
        guard let handle = FileHandle(forReadingAtPath: path) else {
            reply.error = "the coordinator cannot read \(name)"
            return reply
        }
        defer { try? handle.close() }
        let size = (try? handle.seekToEnd()) ?? 0
        reply.totalSize = size
        guard offset <= size else {
            reply.error = "offset \(offset) is past the end of \(name) (\(size) bytes)"
            return reply
        }
        do {
            try handle.seek(toOffset: offset)
            reply.data = try handle.read(upToCount: Self.pieceSize) ?? Data()
        } catch {
            reply.error = "cannot read \(name): \(error.localizedDescription)"
        }
        return reply
    }
}
