import ArgumentParser
import Foundation
import RefineryModel

/// `refinery export`: merge a LoRA adapter into its base model and write a model folder.
struct ExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export", abstract: "Merge a PEFT LoRA adapter into the base model (weights in the base model's dtype).")

    @Option(help: "Base model folder.") var model: String
    @Option(help: "PEFT LoRA adapter folder.") var adapter: String
    @Option(help: "Output model folder.") var output: String
    @Flag(help: "Replace an existing output folder.") var overwrite = false

    func run() throws {
        try reportingErrors {
            let outputURL = URL(fileURLWithPath: output)
            let existing = (try? FileManager.default.contentsOfDirectory(atPath: output)) ?? []
            if !existing.isEmpty && !overwrite {
                throw CommandError("\(output) is not empty; pass --overwrite to replace it")
            }
            let modelURL = URL(fileURLWithPath: model), adapterURL = URL(fileURLWithPath: adapter)
            // A QLoRA adapter was trained against the 4-bit base: it merges into that base de-quantized, in bfloat16.
            let projections = QLoRABaseNote.projections(forAdapter: adapter)
            let qlora = projections == .nf4RoundTrip
            let llama = try LlamaModel(directory: modelURL, projections: projections)
            let lora = try LoRAAdapter.load(directory: adapterURL, model: llama.config)
            llama.merge(lora)
            let dtype = qlora ? .bf16 : try Checkpoint(directory: modelURL).storedDType
            try llama.writeFolder(to: outputURL, copyingFrom: modelURL, dtype: dtype)
            let base = qlora ? " (a QLoRA adapter: merged into the NF4-dequantized base, never into 4-bit weights)" : ""
            Output.message("wrote \(outputURL.appendingPathComponent("model.safetensors").path) (\(dtype.rawValue)) and the config and tokenizer files\(base)")
        }
    }
}
