import ArgumentParser
import Foundation
import RefineryModel

/// `refinery export`: merge a LoRA adapter into its base model and write a model folder, or
/// write the model (an adapter merged first, if given) as one GGUF file for llama.cpp / Ollama.
struct ExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export", abstract: "Merge a PEFT LoRA adapter into the base model (a safetensors folder), or write a GGUF file for llama.cpp.")

    @Option(help: "Base model folder.") var model: String
    @Option(help: "PEFT LoRA adapter folder (required for --format safetensors; merged first with gguf).") var adapter: String?
    @Option(help: "Output model folder (safetensors) or file (gguf).") var output: String
    @Option(help: "safetensors (a merged model folder), gguf (one file llama.cpp loads) or gguf-lora (the adapter alone, for llama.cpp's --lora).") var format: String = "safetensors"
    @Option(help: "GGUF weight type: f32, f16, bf16, q8_0 or q4_0 (norms stay f32).") var quant: String = "f16"
    @Flag(help: "Replace an existing output.") var overwrite = false

    func run() throws {
        try reportingErrors {
            switch format {
            case "safetensors": try writeFolder()
            case "gguf": try writeGGUF()
            case "gguf-lora": try writeGGUFAdapter()
            default: throw CommandError("--format \(format): use safetensors, gguf or gguf-lora")
            }
        }
    }

    private func writeGGUF() throws {
        guard let quantization = GGUFExport.Quantization(rawValue: quant) else {
            throw CommandError("--quant \(quant): use one of \(GGUFExport.Quantization.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        if FileManager.default.fileExists(atPath: output) && !overwrite { throw CommandError("\(output) exists; pass --overwrite to replace it") }
        let modelURL = URL(fileURLWithPath: model)
        let projections = QLoRABaseNote.projections(forAdapter: adapter)
        let llama = try LlamaModel(directory: modelURL, projections: projections)
        if let adapter { llama.merge(try LoRAAdapter.load(directory: URL(fileURLWithPath: adapter), model: llama.config)) }
        let name = modelURL.standardizedFileURL.lastPathComponent
        try GGUFExport.write(llama, directory: modelURL, to: output, quantization: quantization, name: name)
        let merged = adapter.map { " with the adapter \($0) merged" + (projections == .nf4RoundTrip ? " into the NF4-dequantized base" : "") } ?? ""
        Output.message("wrote \(output) (GGUF, \(quantization.rawValue))\(merged)")
    }

    private func writeGGUFAdapter() throws {
        guard let adapter else { throw CommandError("--adapter is required with --format gguf-lora") }
        if FileManager.default.fileExists(atPath: output) && !overwrite { throw CommandError("\(output) exists; pass --overwrite to replace it") }
        if QLoRABaseNote.projections(forAdapter: adapter) == .nf4RoundTrip {
            throw CommandError("\(adapter) is a QLoRA adapter, trained against the 4-bit base: export it merged (--format gguf --adapter \(adapter)) instead")
        }
        let config = try ModelConfig.load(directory: URL(fileURLWithPath: model))
        let lora = try LoRAAdapter.load(directory: URL(fileURLWithPath: adapter), model: config)
        try GGUFExport.writeAdapter(lora, model: config, to: output, name: URL(fileURLWithPath: adapter).lastPathComponent)
        Output.message("wrote \(output) (GGUF LoRA adapter, f32, rank \(lora.config.rank)): llama.cpp applies it over the base model's GGUF with --lora")
    }

    private func writeFolder() throws {
        guard let adapter else { throw CommandError("--adapter is required with --format safetensors (a merged model folder)") }
        do {
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
