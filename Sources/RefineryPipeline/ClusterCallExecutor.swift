import Foundation
import RefineryCluster
import RefineryCuration
import RefineryLLM
import RefineryStore

/// Makes curation calls on the cluster: the pending calls become a `CallStage` the coordinator
/// hands to its workers (at most their slots each, the run's per-minute limits and budget).
final class ClusterCallExecutor: LLMCallExecutor {
    let coordinator: Coordinator
    let requestsPerMinute: Int?
    let tokensPerMinute: Int?
    let budget: Double?
    let timeout: Double

    init(coordinator: Coordinator, requestsPerMinute: Int?, tokensPerMinute: Int?, budget: Double?, timeout: Double) {
        self.coordinator = coordinator
        self.requestsPerMinute = requestsPerMinute
        self.tokensPerMinute = tokensPerMinute
        self.budget = budget
        self.timeout = timeout
    }

    func execute(_ pending: [(id: Int64, call: LLMCall)], purpose: String, step: String?, store: RunStore) throws {
        let stage = try CallStage(purpose: purpose, step: step, pending: pending, store: store, requestsPerMinute: requestsPerMinute,
                                  tokensPerMinute: tokensPerMinute, budget: budget, timeout: timeout)
        try coordinator.run(stage)
    }
}
