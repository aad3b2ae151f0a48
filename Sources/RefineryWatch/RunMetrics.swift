import Foundation
import Prometheus
import RefineryCore
import RefineryPipeline

/// A run's state (`RunStatus`, read from its state file) in the Prometheus text format, built with
/// swift-prometheus: tasks by state, LLM requests (by outcome, failures by error class), tokens and
/// cost, curation calls by purpose and outcome, workers by state, and the last training step's
/// loss, gradient norm, learning rate, step time, tokens per second and eval loss. Counters hold the run's totals as the state file records them, so a scrape after a
/// coordinator restart continues where the run is, and every figure equals `status --json`'s.
public enum RunMetrics {
    /// The exposition text of `status`.
    public static func text(of status: RunStatus) -> String {
        let registry = PrometheusCollectorRegistry()
        for (state, count) in [("done", status.chunks[.done] ?? 0), ("failed", status.chunks[.failed] ?? 0), ("pending", status.chunks[.pending] ?? 0)] {
            registry.makeGauge(name: "refinery_chunks", labels: [("state", state)], help: "Generation chunks (tasks) by state.").set(Double(count))
        }
        registry.makeCounter(name: "refinery_llm_requests_total", help: "LLM requests the run has paid for (generation).")
            .increment(by: Int64(status.requests))
        for (outcome, count) in status.requestOutcomes {
            registry.makeCounter(name: "refinery_llm_requests_by_outcome_total", labels: [("outcome", outcome)],
                                 help: "LLM requests (generation) by outcome: done, failed, or sent (in flight).").increment(by: Int64(count))
        }
        for (errorClass, count) in status.errorsByClass {
            registry.makeCounter(name: "refinery_llm_errors_total", labels: [("class", errorClass)],
                                 help: "Failed LLM requests and curation calls by error class.").increment(by: Int64(count))
        }
        registry.makeCounter(name: "refinery_llm_tokens_total", labels: [("kind", "prompt")], help: "LLM tokens (generation).")
            .increment(by: Int64(status.usage.promptTokens))
        registry.makeCounter(name: "refinery_llm_tokens_total", labels: [("kind", "completion")], help: "LLM tokens (generation).")
            .increment(by: Int64(status.usage.completionTokens))
        registry.makeCounter(name: "refinery_llm_cost_dollars_total", help: "Dollars spent on generation requests.").increment(by: status.usage.cost)
        for call in status.curationCalls {
            registry.makeGauge(name: "refinery_curation_calls", labels: [("purpose", call.purpose), ("outcome", call.status)],
                               help: "Curation LLM calls by purpose and outcome.").set(Double(call.calls))
            registry.makeGauge(name: "refinery_curation_cost_dollars", labels: [("purpose", call.purpose), ("outcome", call.status)],
                               help: "Dollars of curation LLM calls by purpose and outcome.").set(call.cost)
        }
        let connected = status.workers.filter { $0.state == "connected" }.count
        registry.makeGauge(name: "refinery_workers", labels: [("state", "connected")], help: "Workers by state.").set(Double(connected))
        registry.makeGauge(name: "refinery_workers", labels: [("state", "gone")], help: "Workers by state.").set(Double(status.workers.count - connected))
        registry.makeCounter(name: "refinery_worker_tasks_total", help: "Tasks finished by all workers.")
            .increment(by: Int64(status.workers.map(\.tasksDone).reduce(0, +)))
        if let row = status.lastTrainRow.flatMap({ try? JSONValue.parse($0) }) {
            for (key, name, help) in [("step", "refinery_train_step", "The last finished training step."),
                                      ("loss", "refinery_train_loss", "The last step's training loss."),
                                      ("grad_norm", "refinery_train_grad_norm", "The last step's gradient norm (before clipping)."),
                                      ("lr", "refinery_train_learning_rate", "The last step's learning rate."),
                                      ("tokens", "refinery_train_step_tokens", "Trained tokens of the last step.")] {
                if let value = row[key]?.doubleValue { registry.makeGauge(name: name, help: help).set(value) }
            }
        }
        if let seconds = status.stepSeconds {
            registry.makeGauge(name: "refinery_train_step_seconds", help: "Median seconds per training step over the last ten steps.").set(seconds)
        }
        if let rate = status.tokensPerSecond {
            registry.makeGauge(name: "refinery_train_tokens_per_second", help: "Trained tokens per second of the last step.").set(rate)
        }
        if let loss = status.lastEvalRow.flatMap({ try? JSONValue.parse($0) })?["eval_loss"]?.doubleValue {
            registry.makeGauge(name: "refinery_eval_loss", help: "The last evaluation loss.").set(loss)
        }
        if let step = status.checkpointStep {
            registry.makeGauge(name: "refinery_checkpoint_step", help: "The step of the newest checkpoint.").set(Double(step))
        }
        return registry.emitToString()
    }
}
