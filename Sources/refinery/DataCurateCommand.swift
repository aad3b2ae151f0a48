import ArgumentParser
import Foundation
import RefineryCuration
import RefineryData
import RefineryPipeline
import RefineryStore

/// `refinery data curate`: a config's `curate:` stages on a dataset.
struct DataCurateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "curate", abstract: "Run the curate: stages of a run config on a dataset, storing every decision in a state file.",
        discussion: """
        The stages run in order, each on what the one before kept. With --state, a stage whose \
        settings and input are unchanged since the last run reuses its stored decisions: rerun after \
        a kill, or after changing one stage, and only what changed is computed again.
        """)

    @Option(help: "Run config YAML with a curate: section.") var config: String
    @Option(help: "Input JSONL (any supported format).") var input: String
    @Option(help: "Output JSONL (rows unchanged), written whole at the end.") var output: String
    @Option(help: "SQLite state file for the decisions (see `refinery data why`).") var state: String?

    func run() throws {
        try reportingErrors {
            let plan = try RunConfig(path: config).curate
            guard !plan.stages.isEmpty else { throw CommandError("\(config) has no curate: stages (e.g. `curate:\\n  - dedup: exact`)") }
            let store = try state.map { try RunStore(path: $0) }
            // LLM stages (judge, …) make their calls from here, each kept in the state file.
            let calls = store.map { LLMCallBook(store: $0, executor: LocalLLMCallExecutor(report: { Output.progress($0.hasPrefix("\r") ? $0 : $0 + "\n") })) }
            let context = CurationContext(store: store, calls: calls, report: { Output.progress($0) })
            var lines = try DatasetInput.read(input)
            let total = lines.count
            for (position, stage) in plan.stages.enumerated() {
                lines = try CurationPlan.run(stage, position: position, on: lines, context: context, pipeline: "curate")
            }
            try DatasetLines.write(lines.map(\.row), to: output)
            Output.message("wrote \(lines.count) samples (\(total) in) → \(output)")
        }
    }
}
