import ArgumentParser
import Foundation
import RefineryCuration
import RefineryStore

/// How the LLM-backed data commands (judge, …) make their calls from this machine, and where
/// they keep them.
struct LLMCallOptions: ParsableArguments {
    @Option(help: "SQLite state file keeping every call and its answer (default: OUTPUT.state.db). Run the same command again to resume; answered calls are never paid twice.")
    var state: String?
    @Option(help: "LLM calls in flight at once.") var slots: Int = 4
    @Option(help: "Requests per minute, at most.") var rpm: Int?
    @Option(help: "Tokens per minute, at most (prompt estimate plus max_tokens).") var tpm: Int?
    @Option(help: "Dollars all calls kept in the state file may cost together.") var budget: Double?
    @Option(help: "Seconds one attempt of a call may take.") var timeout: Double = 120

    func validate() throws {
        guard (1...256).contains(slots) else { throw ValidationError("--slots must be between 1 and 256") }
        guard (rpm ?? 1) > 0, (tpm ?? 1) > 0 else { throw ValidationError("--rpm and --tpm must be positive") }
        guard budget.map({ $0.isFinite && $0 >= 0 }) ?? true else { throw ValidationError("--budget must be a number of dollars ≥ 0") }
        guard timeout.isFinite, timeout > 0, timeout <= 86_400 else { throw ValidationError("--timeout must be between 0 and 86400 seconds") }
    }

    /// The state file for `output` and a call book making calls from here.
    func book(output: String) throws -> (RunStore, LLMCallBook) {
        let path = state ?? output + ".state.db"
        let store = try RunStore(path: path)
        let executor = LocalLLMCallExecutor(slots: slots, requestsPerMinute: rpm, tokensPerMinute: tpm, budget: budget, timeout: timeout,
                                            report: { Output.progress($0.hasPrefix("\r") ? $0 : $0 + "\n") })
        return (store, LLMCallBook(store: store, executor: executor))
    }
}
