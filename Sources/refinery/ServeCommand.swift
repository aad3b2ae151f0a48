import ArgumentParser
import Foundation
import RefineryCore
import RefineryModel
import RefineryServe
import RefineryText

/// `refinery serve`: the model behind an OpenAI-compatible API.
struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve a model over an OpenAI-compatible API (/v1/chat/completions, /v1/completions, /v1/models).",
        discussion: """
        Requests decode together (continuous batching); streaming, stop strings, n, seed, logprobs \
        and response_format (json_object, json_schema — enforced while decoding) are supported. \
        Beyond 127.0.0.1 a token is required: set REFINERY_SERVE_TOKEN; clients send it as their \
        API key ("Authorization: Bearer TOKEN").
        """)

    @Option(help: "Model folder (Hugging Face layout).") var model: String
    @Option(help: "PEFT LoRA adapter, merged into the weights in memory.") var adapter: String?
    @Option(name: .customLong("lora"), help: "NAME=DIR: a PEFT LoRA adapter served unmerged on the base as model NAME (repeatable).") var loras: [String] = []
    @Option(help: "The model's name in requests and /v1/models (default: the folder's name).") var name: String?
    @Option(help: "Precision of the matrix products: auto (the checkpoint's), float32 or bfloat16.") var dtype: String = "auto"
    @Option(help: "Address and port to listen on (port 0 picks a free one and prints it).") var listen: String = "127.0.0.1:8000"
    @Option(help: "Sequences decoded together.") var maxBatch: Int = 16
    @Option(help: "Sequences that may wait beyond --max-batch; more get 429.") var maxQueue: Int = 64
    @Option(help: "Largest request body in bytes; larger get 413.") var maxRequestBytes: Int = 4 << 20

    func validate() throws {
        guard maxBatch >= 1 else { throw ValidationError("--max-batch must be at least 1") }
        guard maxQueue >= 0 else { throw ValidationError("--max-queue must be ≥ 0") }
        guard maxRequestBytes >= 1024 else { throw ValidationError("--max-request-bytes must be at least 1024") }
    }

    func run() async throws {
        guard let colon = listen.lastIndex(of: ":"), let port = Int(listen[listen.index(after: colon)...]), (0...65535).contains(port) else {
            throw CommandError("--listen \(listen): expected HOST:PORT, e.g. 127.0.0.1:8000")
        }
        var options = OpenAIServer.Options()
        options.host = String(listen[..<colon])
        options.port = port
        options.token = ProcessInfo.processInfo.environment["REFINERY_SERVE_TOKEN"].flatMap { $0.isEmpty ? nil : $0 }
        options.maxBatch = maxBatch
        options.maxQueue = maxQueue
        options.maxRequestBytes = maxRequestBytes
        let directory = URL(fileURLWithPath: model)
        let host = options.host
        let servedName = name ?? directory.standardizedFileURL.lastPathComponent
        // A sentence-transformers folder (modules.json) is served at /v1/embeddings.
        if FileManager.default.fileExists(atPath: directory.appendingPathComponent("modules.json").path) {
            let embeddings = try reportingErrors { () throws -> EmbeddingModel in
                try OpenAIServer.check(options)
                if adapter != nil { throw CommandError("--adapter applies to language models, not to the embedding model \(model)") }
                return EmbeddingModel(names: [servedName], embedder: try SentenceEmbedder(directory: directory, dtype: try DTypeChoice(parsing: dtype, source: "--dtype")))
            }
            do {
                try await OpenAIServer.run(embeddings: embeddings, options: options) { bound in
                    Output.line("serving \(servedName) on http://\(host):\(bound)/v1 (OpenAI-compatible embeddings)")
                }
            } catch let error as CoreError {
                throw CommandError(error.message)
            }
            return
        }
        let served = try reportingErrors { () throws -> ServedModel in
            try OpenAIServer.check(options)
            let chat = try ChatTokenizer(directory: directory)
            let llama = try LlamaModel(directory: directory, dtype: try DTypeChoice(parsing: dtype, source: "--dtype"),
                                       projections: QLoRABaseNote.projections(forAdapter: adapter))
            if let adapter { llama.merge(try LoRAAdapter.load(directory: URL(fileURLWithPath: adapter), model: llama.config)) }
            var adapters: [String: LoRAAdapter] = [:]
            for entry in loras {
                guard let equals = entry.firstIndex(of: "="), !entry[..<equals].isEmpty, !entry[entry.index(after: equals)...].isEmpty else {
                    throw CommandError("--lora \(entry): expected NAME=DIR, e.g. --lora support=runs/support-adapter")
                }
                let loraName = String(entry[..<equals]), folder = String(entry[entry.index(after: equals)...])
                guard loraName != servedName, adapters[loraName] == nil else { throw CommandError("--lora \(entry): the name \(loraName) is already taken") }
                if QLoRABaseNote.projections(forAdapter: folder) == .nf4RoundTrip {
                    throw CommandError("--lora \(entry) is a QLoRA adapter (trained against the 4-bit base): serve it merged with --adapter")
                }
                adapters[loraName] = try LoRAAdapter.load(directory: URL(fileURLWithPath: folder), model: llama.config)
            }
            return ServedModel(name: servedName, model: llama, chat: chat, adapters: adapters)
        }
        do {
            try await OpenAIServer.run(served: served, options: options) { bound in
                Output.line("serving \(served.names.sorted().joined(separator: ", ")) on http://\(host):\(bound)/v1 (OpenAI-compatible)")
            }
        } catch let error as CoreError {
            throw CommandError(error.message)
        }
    }
}
