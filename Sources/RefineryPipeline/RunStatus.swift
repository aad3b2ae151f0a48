import Foundation
import RefineryCore
import RefineryModel
import RefineryStore
import RefineryText

/// Where a run stands, read from its state file without writing to it: progress, pace and ETA,
/// errors by class, workers and what they hold, curation and training. Holds no secret: the API
/// key is never in the state file. `text` is `status`'s table (RunStatusTable.swift), `json`
/// `status --json` and the dashboard's `/api/status`.
public struct RunStatus: Sendable {
    public var stage: String
    public var stoppedReason: String?
    public var chunks: [ChunkStatus: Int]
    public var requests: Int
    /// LLM requests by outcome ("done", "failed", "sent"), by name.
    public var requestOutcomes: [(outcome: String, count: Int)]
    /// Failed requests and curation calls by error class (`RequestErrorClass`'s names), most first.
    public var errorsByClass: [(errorClass: String, count: Int)]
    public var usage: Usage
    /// Dollars spent on generation and curation calls, and the budget they run under (if any).
    public var spent: Double
    public var budget: Double?
    public var requestsLastMinute: Int
    /// Chunks finished and curation calls answered in the last minute.
    public var chunksLastMinute: Int
    public var callsLastMinute: Int
    public var workers: [WorkerRecord]
    /// The tasks each worker holds a lease on, by worker id.
    public var heldTasks: [String: [String]]
    public var failures: [(chunkID: Int64, reason: String)]
    public var lastTrainRow: String?
    public var lastEvalRow: String?
    public var checkpointStep: Int?
    /// The training stage's number of steps, once it has started.
    public var trainTotalSteps: Int?
    /// Median seconds per step over the last ten steps, and the last step's tokens per second.
    public var stepSeconds: Double?
    public var tokensPerSecond: Double?
    /// The curation stages' LLM calls by purpose and status (answered, failed, pending), with their cost.
    public var curationCalls: [(purpose: String, status: String, calls: Int, cost: Double)]
    /// Finished curation stages with what each kept and dropped, in pipeline order.
    public var curationStages: [(pipeline: String, name: String, kept: Int, dropped: Int)]
    /// When this was read (seconds since 1970).
    public var readAt: Double

    /// Reads the state file at `path` without writing to it.
    public static func read(path: String, now: Double = Date().timeIntervalSince1970) throws -> RunStatus {
        try read(store: RunStore(path: path, readOnly: true), now: now)
    }

    /// Reads through an open store (a reader that keeps its connection, like the dashboard's).
    public static func read(store: RunStore, now: Double = Date().timeIntervalSince1970) throws -> RunStatus {
        let (requests, usage) = try store.totalUsage()
        let log = try store.timedTrainLog()
        let recent = try store.finishedWork(since: now - 60)
        let pace = TrainingPace(log: log)
        return RunStatus(
            stage: try store.meta("stage") ?? "generate",
            stoppedReason: try store.meta("stopped_reason"),
            chunks: try store.chunkCounts(), requests: requests, requestOutcomes: try store.requestOutcomes(),
            errorsByClass: try store.failuresByErrorClass(), usage: usage, spent: try usage.cost + store.callCost(), budget: try store.budget(),
            requestsLastMinute: try store.requestsFinished(since: now - 60), chunksLastMinute: recent.chunks, callsLastMinute: recent.calls,
            workers: try store.workers(), heldTasks: try store.heldTasks(),
            failures: try store.failures().map { ($0.chunkID, $0.reason) },
            lastTrainRow: log.last { !$0.row.contains("eval_loss") }?.row, lastEvalRow: log.last { $0.row.contains("eval_loss") }?.row,
            checkpointStep: try store.trainingCheckpointStep(), trainTotalSteps: try store.meta("train_total_steps").flatMap { Int($0) },
            stepSeconds: pace.stepSeconds, tokensPerSecond: pace.tokensPerSecond,
            curationCalls: try store.callTotals(),
            curationStages: try store.curationStages().map { ($0.pipeline, $0.name, $0.kept, $0.dropped) }, readAt: now)
    }

    /// The last training row's step, if any.
    public var lastStep: Int? { lastTrainRow.flatMap(StepRecord.step(ofLogRow:)) }

    /// Seconds until generation finishes at the last minute's pace (nil without pace or work left).
    public var generationETA: Double? {
        let pending = chunks[.pending] ?? 0
        guard pending > 0, chunksLastMinute > 0 else { return nil }
        return Double(pending) / (Double(chunksLastMinute) / 60)
    }

    /// Seconds until training finishes at the recent steps' pace.
    public var trainingETA: Double? {
        guard let total = trainTotalSteps, let step = lastStep, let stepSeconds, step < total else { return nil }
        return Double(total - step) * stepSeconds
    }

    /// A worker's finished tasks per minute over its time connected.
    public func tasksPerMinute(_ worker: WorkerRecord) -> Double {
        let minutes = (worker.lastSeen - worker.firstSeen) / 60
        return minutes > 0 ? Double(worker.tasksDone) / minutes : 0
    }

    /// One JSON object (`status --json`).
    public var json: String {
        func row(_ text: String?) -> JSONValue { text.flatMap { try? JSONValue.parse($0) } ?? .null }
        func number(_ value: Double?) -> JSONValue { value.map { .double($0) } ?? .null }
        return JSONValue.object([
            ("stage", .string(stage)), ("stopped_reason", stoppedReason.map { .string($0) } ?? .null),
            ("chunks", .object([("total", .int(chunks.values.reduce(0, +))), ("done", .int(chunks[.done] ?? 0)),
                                ("failed", .int(chunks[.failed] ?? 0)), ("pending", .int(chunks[.pending] ?? 0))])),
            ("requests", .int(requests)), ("requests_last_minute", .int(requestsLastMinute)),
            ("requests_by_outcome", .object(requestOutcomes.map { ($0.outcome, .int($0.count)) })),
            ("errors_by_class", .object(errorsByClass.map { ($0.errorClass, .int($0.count)) })),
            ("pace", .object([("chunks_last_minute", .int(chunksLastMinute)), ("calls_last_minute", .int(callsLastMinute))])),
            ("eta_seconds", .object([("generate", number(generationETA)), ("train", number(trainingETA))])),
            ("prompt_tokens", .int(usage.promptTokens)), ("completion_tokens", .int(usage.completionTokens)), ("cost", .double(usage.cost)),
            ("spent", .double(spent)), ("budget", number(budget)),
            ("training", .object([("last", row(lastTrainRow)), ("last_eval", row(lastEvalRow)),
                                  ("checkpoint_step", checkpointStep.map { .int($0) } ?? .null),
                                  ("total_steps", trainTotalSteps.map { .int($0) } ?? .null),
                                  ("step_seconds", number(stepSeconds)), ("tokens_per_second", number(tokensPerSecond))])),
            ("workers", .array(workers.map {
                .object([("id", .string($0.id)), ("host", .string($0.host)), ("slots", .int($0.slots)), ("state", .string($0.state)),
                         ("tasks_done", .int($0.tasksDone)), ("tasks_per_minute", .double(tasksPerMinute($0))),
                         ("first_seen", .double($0.firstSeen)), ("last_seen", .double($0.lastSeen)),
                         ("holds", .array((heldTasks[$0.id] ?? []).map { .string($0) }))])
            })),
            ("failures", .array(failures.map { .object([("chunk", .int(Int($0.chunkID))), ("reason", .string($0.reason))]) })),
            ("curation_calls", .array(curationCalls.map {
                .object([("purpose", .string($0.purpose)), ("status", .string($0.status)), ("calls", .int($0.calls)), ("cost", .double($0.cost))])
            })),
            ("curation_stages", .array(curationStages.map {
                .object([("pipeline", .string($0.pipeline)), ("name", .string($0.name)), ("kept", .int($0.kept)), ("dropped", .int($0.dropped))])
            })),
            ("read_at", .double(readAt)),
        ]).compactText
    }
}

/// Step time and throughput from the training log's timed rows.
struct TrainingPace {
    var stepSeconds: Double?
    var tokensPerSecond: Double?

    init(log: [(row: String, loggedAt: Double?)]) {
        // Train rows only (an eval row follows its step's train row); consecutive steps with times.
        let rows = log.compactMap { entry -> (step: Int, time: Double, tokens: Double)? in
            guard let time = entry.loggedAt, let json = try? JSONValue.parse(entry.row), json["eval_loss"] == nil,
                  let step = json["step"]?.intValue, let tokens = json["tokens"]?.doubleValue else { return nil }
            return (step, time, tokens)
        }
        var intervals: [(seconds: Double, tokens: Double)] = []
        for (previous, next) in zip(rows, rows.dropFirst()) where next.step == previous.step + 1 && next.time > previous.time {
            intervals.append((next.time - previous.time, next.tokens))
        }
        guard let last = intervals.last else { return }
        let recent = intervals.suffix(10).map(\.seconds).sorted()
        stepSeconds = recent[recent.count / 2]
        tokensPerSecond = last.tokens / last.seconds
    }
}
