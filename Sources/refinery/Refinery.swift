import ArgumentParser
import Foundation
import RefineryCore
import RefineryTensor

/// The `refinery` command line (DESIGN §5): thin commands that parse, call a module, print.
@main
struct Refinery: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "refinery",
        abstract: "Turn raw text into instruction data and fine-tune Llama-family models on it.",
        discussion: "Models are Hugging Face folders (config.json, *.safetensors, tokenizer.json, tokenizer_config.json).",
        subcommands: [TokenizeCommand.self, RenderCommand.self, EvalCommand.self, GenerateCommand.self, ChatCommand.self, TrainCommand.self, ExportCommand.self, DataCommand.self, MockLLMCommand.self, CoordinatorCommand.self, WorkerCommand.self, RunCommand.self, StatusCommand.self, KeysCommand.self, DemoCommand.self, DashboardCommand.self, ServeCommand.self]
    )
}

/// Errors that reach the user: printed as `Error: …` with exit code 1.
struct CommandError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Runs `body`, turning library errors into one clear line for the user: `Error: …`, or with
/// `--log-format json` a JSON line (level and event "error") and exit code 1.
func reportingErrors<T>(_ body: () throws -> T) throws -> T {
    do {
        try ProductBackend.checkEnvironment()
        return try body()
    } catch let error as CustomStringConvertible & Error {
        if Output.isJSON {
            Output.event(RunEvent(source: "refinery", name: "error", level: .error, message: error.description))
            throw ExitCode.failure
        }
        throw CommandError(error.description)
    }
}
