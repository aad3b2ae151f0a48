import Foundation
import RefineryCore

extension RunStatus {
    /// `refinery status`: a compact table — one row per aspect of the run, then one per worker
    /// and the first failures. Long cells are cut to keep each line readable in a terminal.
    public var text: String {
        var rows: [(String, String)] = [("stage", stage + (stoppedReason.map { " (stopped: \($0))" } ?? ""))]
        let total = chunks.values.reduce(0, +)
        if total > 0 {
            var cell = "\(chunks[.done] ?? 0)/\(total) done · \(chunks[.failed] ?? 0) failed · \(chunks[.pending] ?? 0) pending"
            if chunksLastMinute > 0 { cell += " · \(chunksLastMinute)/min" }
            if let eta = generationETA { cell += " · eta \(DurationText.of(eta))" }
            rows.append(("chunks", cell))
        }
        rows.append(("requests", String(format: "%d (%d in the last minute) · %d+%d tokens · $%.4f", requests, requestsLastMinute,
                                         usage.promptTokens, usage.completionTokens, usage.cost)))
        if spent > usage.cost || budget != nil {
            rows.append(("spent", String(format: "$%.4f", spent) + (budget.map { String(format: " of a $%.4f budget", $0) } ?? "")))
        }
        if !errorsByClass.isEmpty { rows.append(("errors", errorsByClass.map { "\($0.errorClass) \($0.count)" }.joined(separator: " · "))) }
        if !curationCalls.isEmpty {
            let byPurpose = Dictionary(grouping: curationCalls, by: \.purpose).sorted { $0.key < $1.key }.map { purpose, rows in
                let counts = rows.sorted { $0.status < $1.status }.map { "\($0.calls) \($0.status)" }.joined(separator: ", ")
                return String(format: "%@ %@ ($%.4f)", purpose, counts, rows.map(\.cost).reduce(0, +))
            }
            rows.append(("calls", byPurpose.joined(separator: " · ") + (callsLastMinute > 0 ? " · \(callsLastMinute)/min" : "")))
        }
        if !curationStages.isEmpty {
            rows.append(("curation", curationStages.map { "\($0.name) kept \($0.kept) dropped \($0.dropped)" }.joined(separator: " · ")))
        }
        if let json = lastTrainRow.flatMap({ try? JSONValue.parse($0) }), let step = json["step"]?.intValue {
            var cell = "step \(step)" + (trainTotalSteps.map { "/\($0)" } ?? "")
            if let loss = json["loss"]?.doubleValue { cell += String(format: " · loss %.4f", loss) }
            if let norm = json["grad_norm"]?.doubleValue { cell += String(format: " · grad norm %.3f", norm) }
            if let lr = json["lr"]?.doubleValue { cell += String(format: " · lr %.2e", lr) }
            if let eval = lastEvalRow.flatMap({ try? JSONValue.parse($0) })?["eval_loss"]?.doubleValue { cell += String(format: " · eval %.4f", eval) }
            if let tokensPerSecond { cell += String(format: " · %.0f tokens/s", tokensPerSecond) }
            if let eta = trainingETA { cell += " · eta \(DurationText.of(eta))" }
            rows.append(("training", cell))
        }
        if let checkpointStep { rows.append(("checkpoint", "step \(checkpointStep)")) }
        let connected = workers.filter { $0.state == "connected" }.count
        rows.append(("workers", "\(connected) connected, \(workers.count - connected) gone"))
        var lines = rows.map { Self.pad($0.0, 11) + Self.cut($0.1, 160) }
        if !workers.isEmpty {
            let header = ["worker", "host", "state", "slots", "tasks", "/min", "seen", "holds"]
            let cells = workers.map { worker -> [String] in
                let held = heldTasks[worker.id] ?? []
                return [worker.id, worker.host, worker.state, "\(worker.slots)", "\(worker.tasksDone)", String(format: "%.1f", tasksPerMinute(worker)),
                        "\(max(0, Int(readAt - worker.lastSeen)))s ago",
                        held.prefix(3).joined(separator: ",") + (held.count > 3 ? " +\(held.count - 3)" : "")]
            }
            let widths = header.indices.map { column in min(24, ([header] + cells).map { $0[column].count }.max() ?? 0) }
            for line in [header] + cells {
                lines.append("  " + line.indices.map { Self.pad(Self.cut(line[$0], widths[$0]), widths[$0] + 2) }.joined()
                    .trimmingCharacters(in: .whitespaces))
            }
        }
        if !failures.isEmpty {
            lines.append(Self.pad("failures", 11) + "\(failures.count)")
            for failure in failures.prefix(5) { lines.append(Self.cut("  chunk \(failure.chunkID): \(failure.reason)", 170)) }
        }
        return lines.joined(separator: "\n")
    }

    private static func pad(_ text: String, _ width: Int) -> String {
        text.count >= width ? text + " " : text + String(repeating: " ", count: width - text.count)
    }

    private static func cut(_ text: String, _ width: Int) -> String {
        text.count <= width ? text : String(text.prefix(max(0, width - 1))) + "…"
    }
}
