import Foundation

/// Worker subprocesses of `run` and `demo`: this very executable started as `worker` on
/// loopback, as many as asked.
public final class LocalWorkers: @unchecked Sendable {
    private let lock = NSLock()
    private var processes: [Process] = []

    public init() {}

    /// Starts `count` workers connecting to `endpoint` (`nf4Cache`: their `--nf4-cache`); `quiet`
    /// sends their messages nowhere.
    public func start(count: Int, endpoint: String, slots: Int, model: String?, nf4Cache: String? = nil, extraArguments: [String] = [],
                      quiet: Bool = false) throws {
        // This very executable (found through /proc/self/exe, so also when started through PATH).
        let executable = Bundle.main.executableURL ?? URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        // The workers share this machine's cores: Refinery's pool gets a share each (unless the
        // user chose). How matrix products are cut into blocks changes the bits of a gradient, so
        // the cut follows the coordinator (its REFINERY_THREADS), whatever each worker's pool size.
        var environment = ProcessInfo.processInfo.environment
        let share = String(max(1, ProcessInfo.processInfo.activeProcessorCount / max(count, 1)))
        if environment["REFINERY_THREADS"] == nil { environment["REFINERY_THREADS"] = share }
        for index in 0..<count {
            let process = Process()
            process.executableURL = executable
            process.environment = environment
            var arguments = ["worker", "--coordinator", endpoint, "--slots", String(slots), "--name", "local-\(getpid())-\(index + 1)"]
            if let model { arguments += ["--model", model] }
            if let nf4Cache { arguments += ["--nf4-cache", nf4Cache] }
            arguments += extraArguments
            process.arguments = arguments
            if quiet { process.standardError = FileHandle.nullDevice }
            do { try process.run() } catch { throw PipelineError("cannot start worker \(index + 1) (\(executable.path)): \(error.localizedDescription)") }
            lock.lock()
            processes.append(process)
            lock.unlock()
        }
    }

    private var all: [Process] {
        lock.lock()
        defer { lock.unlock() }
        return processes
    }

    /// A reason to stop when every worker process has exited (nothing is left to do the work).
    public func allExited() -> String? {
        let processes = all
        guard !processes.isEmpty, processes.allSatisfy({ !$0.isRunning }) else { return nil }
        let codes = processes.map { String($0.terminationStatus) }.joined(separator: ", ")
        return "all \(processes.count) worker processes exited (codes \(codes)); their messages above say why"
    }

    /// Waits for the workers to exit after the coordinator's stop; ends those that do not.
    public func waitOrStop(seconds: Double) {
        let end = Date().addingTimeInterval(seconds)
        while all.contains(where: \.isRunning) && Date() < end { Thread.sleep(forTimeInterval: 0.05) }
        stop()
    }

    /// Ends every worker still running and waits for them.
    public func stop() {
        let processes = all
        for process in processes where process.isRunning { process.terminate() }
        for process in processes { process.waitUntilExit() }
        lock.lock()
        self.processes.removeAll()
        lock.unlock()
    }
}
