import Foundation
@testable import RefineryCluster
import RefineryCore
import RefineryLLM
import RefineryStore
import RefineryText
import Testing

/// Leases of LLM calls across a coordinator restart, turn by turn on the in-memory transport:
/// a call a worker held when the coordinator died is neither handed to another worker nor lost,
/// even when the restarted coordinator runs other stages first.
@Suite struct CallLeaseTests {
    static func call(_ text: String) -> LLMCall {
        LLMCall(baseURL: "http://127.0.0.1:9/v1", request: ChatRequest(model: "m", messages: [ChatMessage(role: "user", content: text)]))
    }

    static func coordinator(_ store: RunStore, _ transport: InMemoryTransport, _ clock: ManualClock) throws -> Coordinator {
        var options = CoordinatorOptions(listen: "inproc://unused")
        options.heartbeatInterval = 1
        options.liveness = 3
        options.restartGrace = 45
        return try Coordinator(store: store, options: options, transport: transport, clock: clock)
    }

    static func send(_ body: Refinery_Cluster_Envelope.OneOf_Body, from peer: String, on transport: InMemoryTransport) throws {
        transport.deliver(try Wire.encode(body), from: peer)
    }

    static func hello(_ peer: String, held: [Lease] = [], answered: [Lease] = [], on transport: InMemoryTransport) throws {
        var hello = Refinery_Cluster_Hello()
        hello.workerID = peer
        hello.host = "test"
        hello.slots = 4
        hello.held = held.map(\.message)
        hello.answered = answered.map(\.message)
        try send(.hello(hello), from: peer, on: transport)
    }

    static func answer(_ lease: Lease, from peer: String, on transport: InMemoryTransport) throws {
        guard case let .call(id) = lease.task else { return }
        var result = Refinery_Cluster_CallResult()
        result.lease = lease.message
        result.callID = id
        result.outcome = "answered"
        result.content = "answer \(id)"
        result.cost = 0.01
        result.attempts = 1
        try send(.callResult(result), from: peer, on: transport)
    }

    static func callTasks(_ transport: InMemoryTransport, _ peer: String) throws -> [Lease] {
        try transport.take(for: peer).compactMap { bytes in
            if case let .callTask(lease, _) = try Wire.fromCoordinator(bytes) { return lease }
            return nil
        }
    }

    @Test func aCallHeldAcrossARestartIsNeitherPaidTwiceNorLost() throws {
        let store = try ProtocolTests.store(chunks: 0)
        let calls = (1...3).map { Self.call("question \($0)") }
        let records = try store.registerCalls(calls.map { (key: $0.cacheKey, purpose: "judge", call: $0.json.compactText) })
        let pending = calls.compactMap { call in records[call.cacheKey].map { (id: $0.id, call: call) } }.sorted { $0.id < $1.id }
        let ids = pending.map(\.id)

        // The first coordinator leases all three calls to w1, then dies.
        let clock = ManualClock()
        let first = InMemoryTransport()
        let before = try Self.coordinator(store, first, clock)
        let judging = try CallStage(purpose: "judge", pending: pending, store: store)
        try before.begin(judging)
        try Self.hello("w1", on: first)
        try before.turn(judging)
        let leases = try Self.callTasks(first, "w1")
        #expect(leases.map(\.task) == ids.map { .call($0) })

        // The restarted coordinator runs the (finished) generation stage first: the call leases stay w1's.
        let second = InMemoryTransport()
        let after = try Self.coordinator(store, second, clock)
        let generation = try GenerationStage(store: store)
        try after.begin(generation)
        #expect(ids.allSatisfy { after.lease(of: .call($0))?.workerID == "w1" }, "a later round's call leases are not let go")
        // w1 comes back holding two calls and with the answer to the first in its spool, and delivers it.
        try Self.hello("w1", held: Array(leases.dropFirst()), answered: [leases[0]], on: second)
        try Self.answer(leases[0], from: "w1", on: second)
        try after.turn(generation)
        #expect(try store.calls(ids: [ids[0]])[ids[0]]?.status == .answered, "an answer that arrives during another stage is kept")

        // The round that asks for the other two: a second worker gets neither while w1 holds them.
        let rest = Array(pending.dropFirst())
        let judgingAgain = try CallStage(purpose: "judge", pending: rest, store: store)
        try after.begin(judgingAgain)
        try Self.hello("w2", on: second)
        clock.advance(5)  // past the liveness window of leases a hello does not list
        try Self.send(.heartbeat(Refinery_Cluster_Heartbeat()), from: "w1", on: second)
        try after.turn(judgingAgain)
        #expect(try Self.callTasks(second, "w2").isEmpty, "calls w1 still works on are not handed to w2")
        for lease in leases.dropFirst() { try Self.answer(lease, from: "w1", on: second) }
        try after.turn(judgingAgain)
        #expect(judgingAgain.isComplete)
        let stored = try store.calls(ids: ids)
        #expect(ids.allSatisfy { stored[$0]?.status == .answered && stored[$0]?.workerID == "w1" })
    }

    /// A call that failed for good on a worker (its retries spent) is a warning event naming the
    /// stage, the call, the worker and the error: the coordinator's console says why calls fail.
    @Test func aFailedCallIsAWarningThatSaysWhy() throws {
        let store = try ProtocolTests.store(chunks: 0)
        let call = Self.call("question")
        let records = try store.registerCalls([(key: call.cacheKey, purpose: "judge", call: call.json.compactText)])
        let id = try #require(records[call.cacheKey]?.id)
        let transport = InMemoryTransport()
        let coordinator = try Self.coordinator(store, transport, ManualClock())
        var events: [RunEvent] = []
        coordinator.onEvent = { events.append($0) }
        let judging = try CallStage(purpose: "judge", pending: [(id: id, call: call)], store: store)
        try coordinator.begin(judging)
        try Self.hello("w1", on: transport)
        try coordinator.turn(judging)
        let lease = try #require(try Self.callTasks(transport, "w1").first)
        var result = Refinery_Cluster_CallResult()
        result.lease = lease.message
        result.callID = id
        result.outcome = "failed"
        result.error = "8 attempts failed, the last with: connection failed: cannot reach http://127.0.0.1:9/v1: Connection refused (errno 111)"
        result.errorClass = "connection"
        result.attempts = 8
        try Self.send(.callResult(result), from: "w1", on: transport)
        try coordinator.turn(judging)
        #expect(judging.isComplete)
        let failed = events.filter { $0.name == "call_failed" }
        #expect(failed.count == 1, "\(events.map { $0.name })")
        let event = try #require(failed.first)
        #expect(event.level == .warning)
        #expect(event.message.contains("judge call \(id) on w1 failed (connection: 8 attempts failed"), "\(event.message)")
        let attempts = event.fields.first { $0.0 == "attempts" }?.1
        #expect(attempts == "8")
    }
}
