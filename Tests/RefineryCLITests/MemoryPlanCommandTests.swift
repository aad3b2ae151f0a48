import Foundation
import RefineryModel
import Testing

/// `refinery train --dry-run` and the refusal of runs that cannot fit, on models that exist only
/// as a `config.json` (no weights: the plan must not need them).
@Suite struct MemoryPlanCommandTests {
    static func modelFolder(hidden: Int, intermediate: Int, layers: Int, heads: Int, kvHeads: Int, vocab: Int) throws -> URL {
        let folder = try TrainCommandTests.temporary()
        let config = """
        {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": \(hidden), "intermediate_size": \(intermediate),
         "num_hidden_layers": \(layers), "num_attention_heads": \(heads), "num_key_value_heads": \(kvHeads), "vocab_size": \(vocab),
         "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "max_position_embeddings": 8192, "tie_word_embeddings": false,
         "torch_dtype": "bfloat16", "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu"}
        """
        try config.write(to: folder.appendingPathComponent("config.json"), atomically: true, encoding: .utf8)
        return folder
    }

    static func gib(_ text: String, _ label: String) -> Double? {
        guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix(label) }),
              let range = line.range(of: #"[0-9]+\.[0-9]+ GiB"#, options: .regularExpression) else { return nil }
        return Double(line[range].dropLast(4))
    }

    /// The Llama-3-8B shape: LoRA on a bf16 base vs QLoRA, both with checkpointing at 512 tokens.
    @Test func dryRunPlansAnEightBillionModelFromItsConfigAlone() async throws {
        try await offThePool {
            let model = try Self.modelFolder(hidden: 4096, intermediate: 14336, layers: 32, heads: 32, kvHeads: 8, vocab: 128_256)
            var peaks: [String: Double] = [:]
            for method in ["lora", "qlora"] {
                let result = try CommandLineTests.run(["train", "--model", model.path, "--data", "/nonexistent.jsonl", "--output", "/nonexistent-out",
                                                       "--method", method, "--max-length", "512", "--gradient-checkpointing", "--dry-run"])
                // The folder holds config.json only: the plan reads no weights.
                #expect(result.status == 0, "\(result.stderr)")
                // The planning itself within the 2 s the issue allows, timed in process (a spawned
                // process's start-up under a loaded parallel test run took up to 12 s once).
                var options = TrainingOptions()
                options.method = method == "qlora" ? .qlora : .lora
                options.maxLength = 512
                options.gradientCheckpointing = true
                let start = Date()
                let plan = MemoryPlan(config: try ModelConfig.load(directory: model), options: options, dtype: .bfloat16)
                #expect(Date().timeIntervalSince(start) < 2 && plan.total > 0)
                for label in ["weights: projections", "adapter", "gradients", "optimizer (AdamW)", "activations (checkpointed)", "logits", "expected peak"] {
                    #expect(Self.gib(result.stdout, label) != nil, "\(method): a \(label) line in\n\(result.stdout)")
                }
                peaks[method] = Self.gib(result.stdout, "expected peak")
            }
            let (lora, qlora) = (peaks["lora"] ?? 0, peaks["qlora"] ?? 0)
            // 7.0 G projection values: 13 GiB in bf16, ~3.4 GiB in NF4.
            #expect(lora > 15 && lora < 18, "LoRA on a bf16 base: \(lora) GiB")
            #expect(qlora > 6 && qlora < 8 * 1e9 / Double(1 << 30), "QLoRA: \(qlora) GiB, under the 8 GB target")
        }
    }

    /// 8-bit moments: a quarter of the optimizer state (bytes per value 2 + 8/256 against 8), the
    /// same for the rest; a full fine-tuning run that cannot fit names `--optimizer adamw-8bit`.
    @Test func eightBitMomentsQuarterTheOptimizerState() throws {
        let model = try Self.modelFolder(hidden: 4096, intermediate: 14336, layers: 32, heads: 32, kvHeads: 8, vocab: 128_256)
        let config = try ModelConfig.load(directory: model)
        for method in [TrainingMethod.full, .qlora] {
            var options = TrainingOptions()
            options.method = method
            options.maxLength = 512
            options.gradientCheckpointing = true
            let float32 = MemoryPlan(config: config, options: options, dtype: .bfloat16)
            options.optimizer = .adamW8bit
            let eightBit = MemoryPlan(config: config, options: options, dtype: .bfloat16)
            let a = try #require(float32.entries.first { $0.name == "optimizer (AdamW)" })
            let b = try #require(eightBit.entries.first { $0.name == "optimizer (AdamW 8-bit)" })
            let ratio = Double(b.bytes) / Double(a.bytes)
            // Full: every tensor but the 65 norms (4,096 values each: 8-bit too) is large.
            #expect(ratio > 0.25 && ratio < 0.26, "\(method): 8-bit / float32 optimizer state = \(ratio)")
            #expect(float32.total - eightBit.total == a.bytes - b.bytes, "only the optimizer entry changes")
            let refusal = float32.refusal(available: 1 << 30, options: options.with(optimizer: .adamW))
            #expect(refusal?.contains("--optimizer adamw-8bit") == (method == .full), "\(refusal ?? "")")
            #expect(eightBit.refusal(available: 1 << 30, options: options)?.contains("--optimizer") == false)
        }
    }

    /// A config.json with an absurd size is refused with the key named, not planned (the sizes'
    /// products would overflow).
    @Test func anAbsurdSizeInConfigIsRefused() async throws {
        try await offThePool {
            let model = try Self.modelFolder(hidden: 4096, intermediate: 14336, layers: 1 << 62, heads: 32, kvHeads: 8, vocab: 128_256)
            let result = try CommandLineTests.run(["train", "--model", model.path, "--data", "/nonexistent.jsonl", "--output", "/nonexistent-out",
                                                   "--dry-run"])
            #expect(result.status != 0 && result.stderr.contains("num_hidden_layers"), "\(result.stderr)")
        }
    }

    /// A model no machine here holds: refused before anything is read or written, naming the knobs.
    @Test func aRunThatCannotFitIsRefusedWithTheKnobToTurn() async throws {
        try await offThePool {
            let model = try Self.modelFolder(hidden: 16384, intermediate: 53248, layers: 126, heads: 128, kvHeads: 8, vocab: 128_256)
            let output = try TrainCommandTests.temporary().appendingPathComponent("run")
            let result = try CommandLineTests.run(["train", "--model", model.path, "--data", TrainCommandTests.trainData, "--output", output.path,
                                                   "--max-length", "2048"])
            #expect(result.status != 0)
            for knob in ["--gradient-checkpointing", "--method qlora", "--max-length", "--dry-run", "--ignore-memory-plan"] {
                #expect(result.stderr.contains(knob), "names \(knob): \(result.stderr)")
            }
            #expect(!FileManager.default.fileExists(atPath: output.path), "nothing written")
            // Even with every knob turned, 405B parameters in 4 bits do not fit: said so.
            let smallest = try CommandLineTests.run(["train", "--model", model.path, "--data", TrainCommandTests.trainData, "--output", output.path,
                                                     "--max-length", "256", "--method", "qlora", "--gradient-checkpointing"])
            #expect(smallest.status != 0 && smallest.stderr.contains("no setting lowers it enough"), "\(smallest.stderr)")
        }
    }

    /// A worker whose memory (here `--memory-limit 1M`) cannot hold the run's training plan says so
    /// and declines before loading the model; a worker that fits then trains the run.
    @Test func aWorkerThatCannotHoldThePlanDeclinesTheTrainingStage() async throws {
        try await offThePool {
            let dir = try TrainCommandTests.temporary()
            let yaml = """
            train:
              model: \(TrainCommandTests.llama)
              data: \(TrainCommandTests.trainData)
              output: \(dir.appendingPathComponent("out").path)
              lora_r: 4
              steps: 2
              max_length: 64
            """
            let config = dir.appendingPathComponent("t.yaml")
            try yaml.write(to: config, atomically: true, encoding: .utf8)
            let endpoint = FreePort.endpoint()
            let coordinator = try ClusterTests.Background(["coordinator", "--config", config.path, "--state", dir.appendingPathComponent("s.db").path,
                                                           "--listen", endpoint], log: dir.appendingPathComponent("c.log"))
            let small = try ClusterTests.Background(["worker", "--coordinator", endpoint, "--model", TrainCommandTests.llama, "--memory-limit", "1M"],
                                                    log: dir.appendingPathComponent("small.log"))
            #expect(small.wait(seconds: 30), "the worker stops")
            #expect(small.status != 0)
            #expect(small.output.contains("cannot take the run's training tasks")
                    && small.output.contains("--ignore-memory-plan"), "\(small.output)")
            let able = try ClusterTests.Background(["worker", "--coordinator", endpoint, "--model", TrainCommandTests.llama, "--memory-limit", "8G"],
                                                   log: dir.appendingPathComponent("able.log"))
            #expect(coordinator.wait(seconds: 60) && coordinator.status == 0, "\(coordinator.output)")
            #expect(able.output.contains("training plan: ~"), "\(able.output)")
            if !able.wait(seconds: 10) { able.kill9() }
            #expect(FileManager.default.fileExists(atPath: dir.appendingPathComponent("out/adapter_model.safetensors").path))
        }
    }
}

extension TrainingOptions {
    /// These options with another optimizer.
    func with(optimizer: OptimizerChoice) -> TrainingOptions {
        var copy = self
        copy.optimizer = optimizer
        return copy
    }
}
