import Foundation
import RefineryTensor

/// The expected peak memory of a training run, by class, from `config.json` and the options
/// alone (nothing is loaded). It follows what the engine allocates: sequences of a micro-batch
/// run one after another, so activations scale with `--max-length` (the longest sequence or
/// packed row), not with the micro-batch size.
public struct MemoryPlan: Sendable, Equatable {
    /// One class of memory and its bytes.
    public struct Entry: Sendable, Equatable {
        public var name: String
        public var bytes: Int64
        public var detail: String
    }

    /// The classes, in the order they are printed.
    public var entries: [Entry]
    /// The precision the products run in.
    public var dtype: ComputeDType

    /// The expected peak: the sum of the classes.
    public var total: Int64 { entries.reduce(0) { $0 + $1.bytes } }

    /// What the process holds besides the classes above (runtime, libraries, tokenizer, dataset,
    /// allocator slack): a rough allowance, compared with measured peaks in bench/memory.sh.
    public static let processBaseline: Int64 = 100 << 20

    /// Plans `options` for the model `config` with products in `dtype`.
    public init(config c: ModelConfig, options: TrainingOptions, dtype: ComputeDType) {
        self.dtype = dtype
        let method = options.method
        let (h, inner, layers, vocab) = (Int64(c.hiddenSize), Int64(c.intermediateSize), Int64(c.layerCount), Int64(c.vocabSize))
        let (qDim, kvDim, heads) = (Int64(c.qDim), Int64(c.kvDim), Int64(c.headCount))
        let t = Int64(min(options.maxLength, max(c.maxPositionEmbeddings, 2)))
        let bytesPerValue: Int64 = dtype == .bfloat16 ? 2 : 4
        // Weights.
        let embedding = vocab * h, head = c.tieWordEmbeddings ? 0 : vocab * h
        let perLayerProjections = LinearSlot.allCases.reduce(Int64(0)) { total, slot in
            let s = slot.shape(c)
            return total + Int64(s.out) * Int64(s.in)
        }
        let projections = perLayerProjections * layers
        let norms = (2 * layers + 1) * h * 4
        let denseBytes: Int64 = method == .full && dtype == .bfloat16 ? 6 : bytesPerValue
        var weightEntries: [Entry] = []
        let other = (embedding + head) * denseBytes + norms
        weightEntries.append(Entry(name: "weights: embeddings, head, norms", bytes: other,
                                   detail: "\(Self.millions(embedding + head)) values in \(Self.precision(denseBytes))"))
        if method.quantizesBase {
            // NF4: half a byte per value, a byte of absmax code per 64, a float scale per 16,384; plus the reused tile buffers.
            let nf4 = projections / 2 + projections / 64 + projections / 4096 + 4
            let largest = LinearSlot.allCases.map { Int64($0.shape(c).out) * Int64($0.shape(c).in) }.max() ?? 0
            let tiles = min(Int64(1 << 23), largest) * 6
            weightEntries.append(Entry(name: "weights: projections (4-bit NF4)", bytes: nf4 + tiles,
                                       detail: "\(Self.millions(projections)) values at ~4.13 bits, plus \(Self.mib(tiles)) of dequantized tiles"))
        } else {
            weightEntries.append(Entry(name: "weights: projections", bytes: projections * denseBytes,
                                       detail: "\(Self.millions(projections)) values in \(Self.precision(denseBytes))"))
        }
        // Trained parameters: value (adapters; full fine-tuning's master copy is counted above),
        // gradient, the step's gradient sum — float32 — and AdamW's two moments (float32, or 8-bit
        // codes with a float32 absmax per 256 for tensors of at least 4,096 values).
        // (values of one tensor, how many such tensors): never one entry per layer, whatever
        // num_hidden_layers says.
        var trainedTensors: [(values: Int64, count: Int64)] = []
        if method.trainsAdapter {
            let r = Int64(options.lora.rank)
            for slot in LinearSlot.allCases where (try? options.lora.targets.matches("model.layers.0." + slot.rawValue)) ?? true {
                let s = slot.shape(c)
                trainedTensors += [(r * Int64(s.in), layers), (r * Int64(s.out), layers)]
            }
            let trained = trainedTensors.reduce(0) { $0 + $1.values * $1.count }
            let adapted = LinearSlot.allCases.filter { (try? options.lora.targets.matches("model.layers.0." + $0.rawValue)) ?? true }.count
            weightEntries.append(Entry(name: "adapter", bytes: trained * 4, detail: "\(Self.millions(trained)) values, rank \(r), \(adapted) projections per layer"))
        } else {
            trainedTensors = [(embedding, 1), (head, 1), (h, 2 * layers + 1)].filter { $0.values > 0 }
            for slot in LinearSlot.allCases {
                let s = slot.shape(c)
                trainedTensors.append((Int64(s.out) * Int64(s.in), layers))
            }
        }
        let trained = trainedTensors.reduce(0) { $0 + $1.values * $1.count }
        let optimizerEntry: Entry
        if options.optimizer == .adamW8bit {
            let minimum = Int64(AdamW.minimumEightBitCount), block = Int64(EightBitMoments.blockSize)
            let bytes = trainedTensors.reduce(Int64(0)) { total, tensor in
                let one = tensor.values >= minimum ? 2 * tensor.values + 8 * ((tensor.values + block - 1) / block) : 8 * tensor.values
                return total + one * tensor.count
            }
            optimizerEntry = Entry(name: "optimizer (AdamW 8-bit)", bytes: bytes,
                                   detail: "two 8-bit moments per trained value, float32 below 4,096 values per tensor")
        } else {
            optimizerEntry = Entry(name: "optimizer (AdamW)", bytes: trained * 8, detail: "two float32 moments per trained value")
        }
        let optimizerEntries = [
            Entry(name: "gradients", bytes: trained * 8, detail: "float32, and their sum over the step's micro-batches"),
            optimizerEntry,
        ]
        // Activations of one sequence of t tokens, in float32.
        let r = method.trainsAdapter ? Int64(options.lora.rank) : 0
        let dropoutInputs = method.trainsAdapter && options.lora.dropout > 0
            ? LinearSlot.allCases.reduce(Int64(0)) { $0 + 2 * Int64($1.shape(c).in) } : 0
        let perToken = 4 * h + 2 * qDim + 2 * kvDim + 3 * inner + 2 + 7 * r + dropoutInputs
        let probabilities = heads * t * (t + 1) / 2
        let oneLayer = (t * perToken + probabilities) * 4
        let saved = options.gradientCheckpointing ? layers * t * h * 4 + oneLayer : layers * oneLayer
        let backward = t * (3 * inner + 4 * h + 2 * qDim + 2 * kvDim) * 4
        let logits = t * vocab * 4
        let rounding = dtype == .bfloat16 ? t * max(inner, h) * 2 : 0
        var activationEntries = [
            Entry(name: options.gradientCheckpointing ? "activations (checkpointed)" : "activations", bytes: saved,
                  detail: options.gradientCheckpointing
                      ? "each layer's input for \(t) tokens, one layer's activations recomputed at a time"
                      : "every layer's activations for \(t) tokens, attention probabilities \(Self.mib(probabilities * 4)) per layer"),
            Entry(name: "backward scratch", bytes: backward + rounding, detail: "one layer's gradients of activations"),
            Entry(name: "logits", bytes: logits, detail: "\(t) rows × \(vocab) vocabulary, float32, their gradient in place"),
        ]
        activationEntries.append(Entry(name: "process", bytes: Self.processBaseline, detail: "runtime, libraries, tokenizer, data"))
        entries = weightEntries + optimizerEntries + activationEntries
    }

    /// Why the plan does not fit in `available` bytes and which knob to turn, or nil when it fits.
    public func refusal(available: Int64, options: TrainingOptions) -> String? {
        guard total > available else { return nil }
        var knobs: [String] = []
        if !options.gradientCheckpointing {
            knobs.append("--gradient-checkpointing (activations \(Self.size(entries.first { $0.name.hasPrefix("activations") }?.bytes ?? 0)))")
        }
        if options.method == .lora { knobs.append("--method qlora (the base projections in 4 bits)") }
        if options.method == .full { knobs.append("--method lora or qlora (no gradients or optimizer state for the base)") }
        if options.optimizer == .adamW, let moments = entries.first(where: { $0.name.hasPrefix("optimizer") }), moments.bytes >= total / 10 {
            knobs.append("--optimizer adamw-8bit (optimizer state \(Self.size(moments.bytes)) → about a quarter)")
        }
        if dtype == .float32 { knobs.append("--dtype bfloat16 (half the weights)") }
        if options.maxLength > 512 { knobs.append("a smaller --max-length (activations grow with it; now \(options.maxLength))") }
        let needed = "needs ~\(Self.size(total)) but \(Self.size(available)) is available"
        return knobs.isEmpty
            ? "this run \(needed), and no setting lowers it enough: use a machine with more memory or a smaller model"
            : "this run \(needed); turn " + knobs.joined(separator: ", or ") + ". (--micro-batch-size does not change the peak: a micro-batch's sequences run one after another.)"
    }

    /// The plan as a table.
    public var text: String {
        let width = entries.map(\.name.count).max() ?? 10
        func row(_ name: String, _ bytes: Int64, _ detail: String) -> String {
            let label = name.padding(toLength: width, withPad: " ", startingAt: 0)
            return label + "  " + Self.gib(bytes).leftPadded(9) + "  " + detail
        }
        var lines = entries.map { row($0.name, $0.bytes, $0.detail) }
        lines.append(row("expected peak", total, "products in \(dtype.rawValue)"))
        return lines.joined(separator: "\n")
    }

    /// `bytes` in MiB below a GiB, else in GiB with two decimals (messages).
    public static func size(_ bytes: Int64) -> String { bytes < 1 << 30 ? mib(bytes) : gib(bytes) }

    /// `bytes` in GiB with two decimals (the table's column).
    public static func gib(_ bytes: Int64) -> String { String(format: "%.2f GiB", Double(bytes) / Double(1 << 30)) }
    static func mib(_ bytes: Int64) -> String { String(format: "%.0f MiB", Double(bytes) / Double(1 << 20)) }
    static func millions(_ values: Int64) -> String { String(format: "%.1f M", Double(values) / 1e6) }
    static func precision(_ bytes: Int64) -> String {
        switch bytes {
        case 2: return "bfloat16"
        case 6: return "float32 (master) + bfloat16"
        default: return "float32"
        }
    }

    /// Parses a size like `8G`, `512M`, `24GiB` or `1000000` (bytes; K, M, G, T are powers of 1024).
    public static func parseBytes(_ text: String, flag: String) throws -> Int64 {
        let trimmed = text.trimmingCharacters(in: .whitespaces).uppercased()
        let digits = trimmed.prefix { $0.isNumber || $0 == "." }
        var unit = String(trimmed.dropFirst(digits.count))
        if unit.hasSuffix("IB") { unit.removeLast(2) } else if unit.hasSuffix("B") { unit.removeLast() }
        let scales: [String: Double] = ["": 1, "K": 1024, "M": 1_048_576, "G": 1_073_741_824, "T": 1_099_511_627_776]
        guard let value = Double(digits), value.isFinite, value > 0, let scale = scales[unit], value * scale < 9e18 else {
            throw ModelError("\(flag) \(text) is not a size: give bytes or a number with K, M, G or T (e.g. 8G)")
        }
        return Int64(value * scale)
    }

    /// This process's resident memory (`VmRSS` of /proc/self/status; 0 where unreadable).
    public static func residentMemory() -> Int64 {
        guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
        for line in text.split(separator: "\n") where line.hasPrefix("VmRSS:") {
            let fields = line.split(separator: " ")
            if fields.count >= 2, let kib = Int64(fields[1]) { return kib * 1024 }
        }
        return 0
    }

    /// Memory this machine can give a run: `MemAvailable` of /proc/meminfo (nil where unreadable).
    public static func availableMemory() -> Int64? {
        guard let text = try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix("MemAvailable:") {
            let fields = line.split(separator: " ")
            if fields.count >= 2, let kib = Int64(fields[1]) { return kib * 1024 }
        }
        return nil
    }
}

private extension String {
    func leftPadded(_ width: Int) -> String { count >= width ? self : String(repeating: " ", count: width - count) + self }
}
