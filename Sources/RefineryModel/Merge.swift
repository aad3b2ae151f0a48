import Foundation
import RefineryTensor

extension LlamaModel {
    /// Adds `s·B·A` of every adapted projection into the base weights, in place (inference and
    /// export; training keeps the adapter separate). A bfloat16 weight is merged in float32 and
    /// rounded back to bfloat16, as PEFT's merge into a bfloat16 base does.
    public func merge(_ adapter: LoRAAdapter) {
        let scaling = adapter.config.scaling
        for (index, layer) in layers.enumerated() {
            let projections: [(LinearSlot, WeightMatrix)] = [
                (.q, layer.qProj), (.k, layer.kProj), (.v, layer.vProj), (.o, layer.oProj),
                (.gate, layer.gateProj), (.up, layer.upProj), (.down, layer.downProj),
            ]
            for (slot, weight) in projections {
                guard let pair = adapter.pair(layer: index, slot: slot) else { continue }
                let (out, inFeatures) = (weight.shape[0], weight.shape[1])
                let r = pair.a.shape[0]
                weight.update { values in
                    BLAS.gemm(transA: false, transB: false, m: out, n: inFeatures, k: r, alpha: scaling,
                              a: pair.b.pointer, lda: r, b: pair.a.pointer, ldb: inFeatures, beta: 1, c: values.pointer, ldc: inFeatures)
                }
            }
        }
    }

    /// Writes this model as a Hugging Face folder: `model.safetensors` in `dtype`, with
    /// `config.json`, tokenizer files and templates copied from `source`. Writes into a temporary
    /// folder and moves it into place, so a failure never leaves half a model.
    public func writeFolder(to destination: URL, copyingFrom source: URL, dtype: SafetensorsDType) throws {
        let fm = FileManager.default
        let staging = destination.deletingLastPathComponent().appendingPathComponent(".\(destination.lastPathComponent).partial-\(getpid())")
        try? fm.removeItem(at: staging)
        do {
            try fm.createDirectory(at: staging, withIntermediateDirectories: true)
            try SafetensorsWriter.write(namedWeights(), to: staging.appendingPathComponent("model.safetensors").path, dtype: dtype)
            let files = ["config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                         "special_tokens_map.json", "chat_template.jinja"]
            for file in files where fm.fileExists(atPath: source.appendingPathComponent(file).path) {
                try fm.copyItem(at: source.appendingPathComponent(file), to: staging.appendingPathComponent(file))
            }
            if fm.fileExists(atPath: destination.path) {
                let contents = try fm.contentsOfDirectory(atPath: destination.path)
                for name in contents where name.hasSuffix(".safetensors") || name.hasSuffix(".json") || name.hasSuffix(".jinja") {
                    try fm.removeItem(at: destination.appendingPathComponent(name))
                }
                for name in try fm.contentsOfDirectory(atPath: staging.path) {
                    try fm.moveItem(at: staging.appendingPathComponent(name), to: destination.appendingPathComponent(name))
                }
                try fm.removeItem(at: staging)
            } else {
                try fm.moveItem(at: staging, to: destination)
            }
        } catch let error as ModelError {
            try? fm.removeItem(at: staging)
            throw error
        } catch {
            try? fm.removeItem(at: staging)
            throw ModelError("cannot write the model folder \(destination.path): \(error.localizedDescription)")
        }
    }
}
