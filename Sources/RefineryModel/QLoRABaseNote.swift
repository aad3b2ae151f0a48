import Foundation
import RefineryTensor

/// The note a QLoRA run leaves next to its adapter (`qlora_base.json`): the adapter was trained
/// against the NF4-quantized base, so merging it belongs in the de-quantized base
/// (`ProjectionStorage.nf4RoundTrip`), never in the original or the quantized weights.
public enum QLoRABaseNote {
    /// The file name inside the adapter folder.
    public static let fileName = "qlora_base.json"

    /// Writes the note into `adapterDirectory`.
    public static func write(into adapterDirectory: URL) throws {
        let text = """
        {"base_quantization": "nf4", "block_size": \(NF4Matrix.blockSize), "double_quantization": true, \
        "absmax_block_size": \(NF4Matrix.absmaxBlockSize), "merge_into": "the NF4-dequantized base, in bfloat16"}

        """
        do {
            try Data(text.utf8).write(to: adapterDirectory.appendingPathComponent(fileName), options: .atomic)
        } catch {
            throw ModelError("cannot write \(fileName) into \(adapterDirectory.path): \(error.localizedDescription)")
        }
    }

    /// How to load the base for the adapter at `adapterPath` (nil: none): the NF4-dequantized base
    /// for a QLoRA adapter — the weights it was trained against —, else as stored.
    public static func projections(forAdapter adapterPath: String?) -> ProjectionStorage {
        guard let adapterPath, isPresent(in: URL(fileURLWithPath: adapterPath)) else { return .asStored }
        return .nf4RoundTrip
    }

    /// Whether `adapterDirectory` holds an adapter trained with QLoRA.
    public static func isPresent(in adapterDirectory: URL) -> Bool {
        FileManager.default.fileExists(atPath: adapterDirectory.appendingPathComponent(fileName).path)
    }
}
