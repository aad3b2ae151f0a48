import ArgumentParser
import Foundation
import RefineryCluster
import RefineryModel
import RefineryPipeline

/// CURVE options shared by the coordinator and `run`.
struct CoordinatorSecurityOptions: ParsableArguments {
    @Option(help: "This coordinator's key file (from `refinery keys generate`); turns on CURVE for every link.") var keys: String?
    @Option(help: "File of worker public keys allowed to connect, one per line (needed with --keys).") var allow: String?
    @Flag(help: "Listen on a non-loopback address without encryption or authentication.") var insecure = false

    func resolve(listen: String) throws -> CurveServerSecurity? {
        if let keys {
            guard let allow else { throw CommandError("--keys needs --allow FILE: the public keys of the workers to admit (there is no unauthenticated fallback)") }
            let pair = try CurveKeyPair(file: keys)
            let allowed = try CurveKeyPair.allowlist(file: allow)
            guard !allowed.isEmpty else { throw CommandError("\(allow) lists no worker key: no worker could connect") }
            return CurveServerSecurity(serverSecretKey: pair.secretKey, allowedWorkerKeys: allowed)
        }
        if !Self.isLoopback(listen) && !insecure {
            throw CommandError("\(listen) is reachable from other machines, but no keys are configured: anyone could join the run and receive its API key. Make keys with `refinery keys generate` and pass --keys/--allow, or pass --insecure on a network you trust.")
        }
        return nil
    }

    /// Loopback TCP, IPC and in-process endpoints stay on this machine.
    static func isLoopback(_ endpoint: String) -> Bool {
        if endpoint.hasPrefix("ipc://") || endpoint.hasPrefix("inproc://") { return true }
        guard endpoint.hasPrefix("tcp://") else { return false }
        let host = endpoint.dropFirst(6).split(separator: ":").dropLast().joined(separator: ":")
        return host.hasPrefix("127.") || host == "localhost" || host == "[::1]"
    }
}

/// `refinery coordinator`: runs the pipeline of a run config, handing work to workers.
struct CoordinatorCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "coordinator",
        abstract: "Run a config's pipeline (generate, curate, train), handing chunks and micro-batches to workers; start it again to resume.")

    @Option(help: "Run config YAML (sections data, generate, curate, train, export).") var config: String
    @Option(help: "Precision of the training products: auto (the checkpoint's), float32 or bfloat16 (overrides train.dtype).") var dtype: String?
    @Option(help: "SQLite state file (default: data.state of the config).") var state: String?
    @Option(help: "ZeroMQ endpoint to listen on.") var listen: String = "tcp://127.0.0.1:5555"
    @Option(help: "Seconds between heartbeats.") var heartbeat: Double = 1
    @Flag(help: "Send the chunks an earlier run gave up on again (before training has begun).") var retryFailed = false
    @OptionGroup var security: CoordinatorSecurityOptions
    @OptionGroup var dashboardOption: DashboardOption
    @OptionGroup var logFormat: LogFormatOption

    func run() throws {
        try reportingErrors {
            try logFormat.apply()
            var pipeline = try ClusterPipeline(config: try RunConfig(path: config, overrides: ["train": dtype.map { ["dtype": $0] } ?? [:]]), statePath: state, listen: listen,
                                               security: try security.resolve(listen: listen), report: Output.progress)
            pipeline.heartbeat = heartbeat
            pipeline.retryFailed = retryFailed
            pipeline.onEvent = Output.event
            let dashboard = try dashboardOption.start(statePath: pipeline.state)
            defer { dashboard?.stop() }
            let written = try pipeline.run()
            Output.message("run complete; wrote " + written.joined(separator: ", "))
        }
    }
}

/// `refinery worker`: takes generation and gradient tasks from a coordinator.
struct WorkerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "worker", abstract: "Work for a coordinator: LLM calls for generation, gradients for training. Reconnects by itself.")

    @Option(help: "The coordinator's endpoint.") var coordinator: String = "tcp://127.0.0.1:5555"
    @Option(help: "LLM calls in flight at once.") var slots: Int = 4
    @Option(help: "Base model folder, for gradient tasks (must be the coordinator's model).") var model: String?
    @Option(help: "Download the coordinator's model into this folder, then take gradient tasks.") var fetchModel: String?
    @Option(help: "Environment variable with the LLM API key (default: the run's api_key_env).") var apiKeyEnv: String?
    @Option(help: "This worker's key file (from `refinery keys generate`).") var keys: String?
    @Option(help: "The coordinator's public key, or a file holding it (with --keys). A key that starts with '-' must be given as --server-key=KEY or in a file.") var serverKey: String?
    @Option(help: "A name for this worker (default: host-pid-random).") var name: String?
    @Option(help: "The most memory this worker may use, e.g. 8G (default: what the machine has available); training stages whose memory plan exceeds it are declined.") var memoryLimit: String?
    @Flag(help: "Take training tasks even when the memory plan says they will not fit.") var ignoreMemoryPlan = false
    @Option(help: "QLoRA: keep the 4-bit base in this folder; later runs on the same checkpoint read it instead of quantizing again.") var nf4Cache: String?
    @OptionGroup var logFormat: LogFormatOption

    func run() throws {
        try reportingErrors {
            try logFormat.apply()
            guard slots > 0 else { throw CommandError("--slots must be positive") }
            var options = WorkerOptions(coordinator: coordinator)
            options.slots = slots
            if let name { options.workerID = name }
            options.apiKeyEnv = apiKeyEnv
            options.memoryLimit = try memoryLimit.map { try MemoryPlan.parseBytes($0, flag: "--memory-limit") }
            options.ignoreMemoryPlan = ignoreMemoryPlan
            if let keys {
                guard let serverKey else { throw CommandError("--keys needs --server-key: the coordinator's public key (40 characters) or a file holding it") }
                options.security = CurveClientSecurity(keys: try CurveKeyPair(file: keys), serverPublicKey: try CurveKeyPair.publicKey(keyOrFile: serverKey))
            } else if serverKey != nil {
                throw CommandError("--server-key needs --keys: this worker's own key file")
            }
            guard model == nil || fetchModel == nil else { throw CommandError("give --model or --fetch-model, not both") }
            options.modelDirectory = model
            options.fetchModelInto = fetchModel
            let worker = try Worker(options: options, executors: .standard(nf4Cache: nf4Cache.map { NF4Cache(directory: URL(fileURLWithPath: $0)) }))
            worker.report = { Output.progress($0 + "\n") }
            let reason = try worker.run()
            Output.progress("[worker] \(reason)\n")
        }
    }
}

/// `refinery run`: a coordinator and N worker processes on this machine (loopback).
struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run", abstract: "Run a config's pipeline with a local cluster: this process coordinates, N worker processes work.")

    @Option(help: "Run config YAML.") var config: String
    @Option(help: "Precision of the training products: auto (the checkpoint's), float32 or bfloat16 (overrides train.dtype).") var dtype: String?
    @Option(help: "Worker processes to start.") var workers: Int = 2
    @Option(help: "SQLite state file (default: data.state of the config).") var state: String?
    @Option(help: "LLM calls in flight per worker.") var slots: Int = 4
    @Flag(help: "Send the chunks an earlier run gave up on again (before training has begun).") var retryFailed = false
    @OptionGroup var dashboardOption: DashboardOption
    @OptionGroup var logFormat: LogFormatOption

    func run() throws {
        try reportingErrors {
            try logFormat.apply()
            guard workers >= 1 else { throw CommandError("--workers must be at least 1 (for a coordinator alone, use `refinery coordinator`)") }
            guard slots > 0 else { throw CommandError("--slots must be positive") }
            var pipeline = try ClusterPipeline(config: try RunConfig(path: config, overrides: ["train": dtype.map { ["dtype": $0] } ?? [:]]), statePath: state, listen: "tcp://127.0.0.1:*", security: nil,
                                               report: Output.progress)
            pipeline.onEvent = Output.event
            pipeline.retryFailed = retryFailed
            let processes = LocalWorkers()
            defer { processes.stop() }
            let dashboard = try dashboardOption.start(statePath: pipeline.state)
            defer { dashboard?.stop() }
            let written = try pipeline.run(stopCheck: processes.allExited) { endpoint in
                try processes.start(count: workers, endpoint: endpoint, slots: slots, model: pipeline.trainModel, nf4Cache: pipeline.nf4Cache,
                                    extraArguments: logFormat.logFormat == "json" ? ["--log-format", "json"] : [])
            }
            processes.waitOrStop(seconds: 10)
            Output.message("run complete; wrote " + written.joined(separator: ", "))
        }
    }
}

/// `refinery status`: where a run stands, from its state file (read-only).
struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "status", abstract: "Show a run's stage, progress, workers, throughput and failures.")

    @Option(help: "SQLite state file.") var state: String
    @Flag(help: "Print one JSON object.") var json = false

    func run() throws {
        try reportingErrors {
            let report = try RunStatus.read(path: state)
            Output.line(json ? report.json : report.text)
        }
    }
}

/// `refinery keys generate`: a CURVE keypair for a coordinator or a worker.
struct KeysCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "keys", abstract: "CURVE keys for encrypted, authenticated cluster links.",
                                                    subcommands: [KeysGenerateCommand.self])
}

struct KeysGenerateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "generate", abstract: "Write a new keypair file (mode 600) and print its public key.")

    @Option(help: "Key file to write.") var out: String

    func run() throws {
        try reportingErrors {
            guard !FileManager.default.fileExists(atPath: out) else { throw CommandError("\(out) exists; refusing to overwrite a key (move it away first)") }
            let pair = try CurveKeyPair.generate()
            guard FileManager.default.createFile(atPath: out, contents: Data(pair.fileText.utf8), attributes: [.posixPermissions: 0o600]) else {
                throw CommandError("cannot write \(out)")
            }
            Output.line(pair.publicKey)
        }
    }
}
