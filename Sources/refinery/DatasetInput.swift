import RefineryData

/// Reads a command's input dataset (any supported format; a bad line stops with its file and
/// line), saying so when it holds no samples at all.
enum DatasetInput {
    static func read(_ path: String) throws -> [DatasetLine] {
        let lines = try DatasetLines.read(path)
        if lines.isEmpty { Output.progress("warning: \(path) holds no samples (an empty file, or only blank lines)\n") }
        return lines
    }
}
