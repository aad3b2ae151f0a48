import Foundation
import RefineryCore
import RefineryLLM
import SwiftProtobuf

/// Limits on what a peer may send; anything beyond is refused, never trusted.
enum WireLimits {
    static let maxMessageBytes = 1 << 30
    static let maxName = 256
    static let maxHost = 1024
    static let maxSlots: UInt32 = 1024
    static let maxLeasesInHello = 1 << 16
    static let maxText = 16 << 20
    static let maxPairs = 10_000
    static let maxRequests = 10_000
    static let maxSequences = 1 << 16
    static let maxSequenceLength = 1 << 20
    static let maxPiece = 64 << 20
    static let maxCall = 16 << 20
}

extension Wire {
    /// Decodes and checks a message a worker sent. A message that does not decode, comes from
    /// another protocol version (other than a hello, which the coordinator answers with the
    /// reason), or holds a field out of range is refused with the reason.
    public static func fromWorker(_ bytes: [UInt8]) throws(WireRefusal) -> WorkerMessage {
        let envelope = try envelope(bytes)
        guard let body = envelope.body else { throw WireRefusal("an envelope without a message") }
        if case let .hello(hello) = body { return .hello(try checkHello(hello, version: envelope.protocolVersion)) }
        guard envelope.protocolVersion == protocolVersion else {
            throw WireRefusal("protocol version \(envelope.protocolVersion) is not \(protocolVersion)")
        }
        switch body {
        case .heartbeat: return .heartbeat
        case .taskRequest: return .taskRequest
        case let .generateResult(result):
            let lease = try Lease(message: result.lease)
            guard case let .chunk(id) = lease.task, id == result.chunkID else { throw WireRefusal("a generation result for \(lease.task), not chunk \(result.chunkID)") }
            guard ["done", "failed", "stopped"].contains(result.outcome) else { throw WireRefusal("unknown outcome \(result.outcome.prefix(40))") }
            guard result.pairs.count <= WireLimits.maxPairs, result.requests.count <= WireLimits.maxRequests else {
                throw WireRefusal("a generation result with \(result.pairs.count) pairs and \(result.requests.count) requests")
            }
            for request in result.requests {
                guard request.promptTokens >= 0, request.completionTokens >= 0, request.cost.isFinite, request.cost >= 0,
                      request.startedAt.isFinite, request.finishedAt.isFinite, ["done", "failed", "sent"].contains(request.status) else {
                    throw WireRefusal("a request record with negative or non-finite usage")
                }
                try checkErrorClass(request.errorClass)
            }
            return .generateResult(lease, result)
        case let .gradientResult(result):
            let lease = try Lease(message: result.lease)
            guard lease.task.step != nil else { throw WireRefusal("a gradient result for \(lease.task)") }
            guard result.parameterVersion <= UInt64(TaskID.maxStep), result.tokens <= UInt64(Int32.max) else {
                throw WireRefusal("parameter version \(result.parameterVersion) or token count \(result.tokens) is out of range")
            }
            guard result.gradient.count % 4 == 0, result.computeSeconds.isFinite, result.computeSeconds >= 0 else {
                throw WireRefusal("a gradient of \(result.gradient.count) bytes, or a compute time of \(result.computeSeconds) s")
            }
            return .gradientResult(lease, result)
        case let .callResult(result):
            let lease = try Lease(message: result.lease)
            guard case let .call(id) = lease.task, id == result.callID else { throw WireRefusal("a call result for \(lease.task), not call \(result.callID)") }
            guard ["answered", "failed", "stopped"].contains(result.outcome) else { throw WireRefusal("unknown outcome \(result.outcome.prefix(40))") }
            guard result.content.utf8.count <= WireLimits.maxText, result.error.utf8.count <= WireLimits.maxText,
                  result.finishReason.utf8.count <= 64 else { throw WireRefusal("a call result with over-long fields") }
            try checkErrorClass(result.errorClass)
            guard result.promptTokens >= 0, result.completionTokens >= 0, result.cost.isFinite, result.cost >= 0, result.attempts <= 10_000 else {
                throw WireRefusal("a call result with negative or non-finite usage")
            }
            return .callResult(lease, result)
        case let .modelFileRequest(request):
            guard request.name.isEmpty || ModelFileServer.isPlainName(request.name), request.offset <= UInt64(Int64.max) else {
                throw WireRefusal("a model file request for \(request.name.prefix(80)) at \(request.offset)")
            }
            return .modelFileRequest(name: request.name, offset: request.offset)
        case .hello:
            throw WireRefusal("unreachable")
        default:
            throw WireRefusal("a worker may not send \(String(describing: body).prefix(40))")
        }
    }

    private static func checkHello(_ hello: Refinery_Cluster_Hello, version: UInt32) throws(WireRefusal) -> WorkerHello {
        guard !hello.workerID.isEmpty, hello.workerID.utf8.count <= WireLimits.maxName, hello.host.utf8.count <= WireLimits.maxHost,
              hello.modelHash.utf8.count <= 64 else {
            throw WireRefusal("a hello with an empty or over-long worker id, host or model hash")
        }
        let listed = hello.held.count + hello.answered.count
        guard listed <= WireLimits.maxLeasesInHello else { throw WireRefusal("a hello listing \(listed) leases") }
        // A peer of another version is only told so: its leases are in a shape this build may not
        // read, and it will not be admitted anyway.
        var held: [Lease] = [], answered: [Lease] = []
        if version == protocolVersion {
            for lease in hello.held { held.append(try Lease(message: lease)) }
            for lease in hello.answered { answered.append(try Lease(message: lease)) }
        }
        return WorkerHello(protocolVersion: version, workerID: hello.workerID, host: hello.host, slots: Int(min(max(1, hello.slots), WireLimits.maxSlots)),
                           modelHash: hello.modelHash, held: held, answered: answered, fetchModel: hello.fetchModel)
    }

    /// Decodes and checks a message the coordinator sent.
    public static func fromCoordinator(_ bytes: [UInt8]) throws(WireRefusal) -> CoordinatorMessage {
        let envelope = try envelope(bytes)
        guard let body = envelope.body else { throw WireRefusal("an envelope without a message") }
        // A refusal is read whatever the version: it usually says the versions differ.
        if case let .refused(refused) = body { return .refused(String(refused.reason.prefix(4096))) }
        guard envelope.protocolVersion == protocolVersion else {
            throw WireRefusal("protocol version \(envelope.protocolVersion) is not \(protocolVersion): run the same Refinery release on every machine")
        }
        switch body {
        case let .welcome(welcome):
            guard (1...600_000).contains(welcome.heartbeatMs), welcome.runID.utf8.count <= WireLimits.maxName, welcome.stage.utf8.count <= 64,
                  welcome.modelHash.utf8.count <= 64, welcome.apiKey.utf8.count <= 4096 else {
                throw WireRefusal("a welcome with a heartbeat of \(welcome.heartbeatMs) ms or over-long fields")
            }
            let generation = welcome.hasGeneration ? try GenerationWireSettings(message: welcome.generation) : nil
            let training = welcome.hasTraining ? try TrainingWireSettings(message: welcome.training) : nil
            return .welcome(welcome, generation: generation, training: training)
        case let .heartbeat(heartbeat):
            return .heartbeat(helloRequired: heartbeat.helloRequired)
        case let .generateTask(task):
            let lease = try Lease(message: task.lease)
            guard case let .chunk(id) = lease.task, id == task.chunkID else { throw WireRefusal("a generation task for \(lease.task), not chunk \(task.chunkID)") }
            guard !task.text.isEmpty, task.text.utf8.count <= WireLimits.maxText else { throw WireRefusal("a chunk of \(task.text.utf8.count) bytes") }
            return .generateTask(lease, chunkID: id, text: task.text)
        case let .resultAck(ack):
            return .resultAck(try Lease(message: ack.lease))
        case let .parameterUpdate(update):
            guard update.version <= UInt64(TaskID.maxStep), update.values.count % 4 == 0, UInt64(update.values.count / 4) == update.count else {
                throw WireRefusal("parameters of version \(update.version): \(update.values.count) bytes for \(update.count) values")
            }
            return .parameterUpdate(version: update.version, values: update.values)
        case let .gradientTask(task):
            return .gradientTask(try Lease(message: task.lease), try checkGradientTask(task))
        case let .callTask(task):
            let lease = try Lease(message: task.lease)
            guard case let .call(id) = lease.task, id == task.callID else { throw WireRefusal("a call task for \(lease.task), not call \(task.callID)") }
            guard task.call.utf8.count <= WireLimits.maxCall, let json = try? JSONValue.parse(task.call) else { throw WireRefusal("a call that is not JSON") }
            let call: LLMCall
            do { call = try LLMCall(json: json) } catch { throw WireRefusal("call \(id): \(error.reason)") }
            guard (1...1000).contains(task.retryAttempts), task.retryBaseDelay.isFinite, task.retryMaxDelay.isFinite, task.retryBaseDelay >= 0,
                  task.retryMaxDelay >= 0, task.retryMaxDelay <= 86_400, task.timeoutSeconds.isFinite, task.timeoutSeconds > 0,
                  task.timeoutSeconds <= 86_400 else {
                throw WireRefusal("call \(id): retry attempts, delays or timeout out of range")
            }
            return .callTask(lease, CallTaskSpec(callID: id, call: call, retry: RetryPolicy(maxAttempts: Int(task.retryAttempts), baseDelay: task.retryBaseDelay,
                                                                                           maxDelay: task.retryMaxDelay), timeout: task.timeoutSeconds))
        case let .modelFileChunk(chunk):
            guard chunk.name.isEmpty || ModelFileServer.isPlainName(chunk.name), chunk.names.count <= 10_000,
                  chunk.names.allSatisfy(ModelFileServer.isPlainName), chunk.data.count <= WireLimits.maxPiece,
                  chunk.offset <= UInt64(Int64.max), chunk.totalSize <= UInt64(Int64.max), chunk.error.utf8.count <= 4096 else {
                throw WireRefusal("a model file piece with a name that is not a plain file name, or sizes out of range")
            }
            return .modelFileChunk(chunk)
        case let .stop(stop):
            return .stop(reason: String(stop.reason.prefix(4096)), failed: stop.failed)
        default:
            throw WireRefusal("a coordinator may not send \(String(describing: body).prefix(40))")
        }
    }

    private static func checkGradientTask(_ task: Refinery_Cluster_GradientTask) throws(WireRefusal) -> GradientTaskSpec {
        let lease = try Lease(message: task.lease)
        guard task.parameterVersion <= UInt64(TaskID.maxStep), task.step <= UInt64(TaskID.maxStep) else {
            throw WireRefusal("step \(task.step) or parameter version \(task.parameterVersion) is out of range")
        }
        switch lease.task {
        case let .microBatch(step, index) where !task.lossOnly && step == Int(task.step) && index == Int(task.microBatch): break
        case let .eval(step, _) where task.lossOnly && step == Int(task.step): break
        default: throw WireRefusal("a gradient task whose lease \(lease.task) does not match its step \(task.step) and micro-batch \(task.microBatch)")
        }
        guard !task.sequences.isEmpty, task.sequences.count <= WireLimits.maxSequences else { throw WireRefusal("a task with \(task.sequences.count) sequences") }
        guard task.lossOnly || task.dropoutSeeds.count == task.sequences.count else {
            throw WireRefusal("\(task.sequences.count) sequences with \(task.dropoutSeeds.count) dropout seeds")
        }
        var sequences: [TrainingSequenceSpec] = []
        for sequence in task.sequences {
            let count = sequence.ids.count
            guard count > 0, count <= WireLimits.maxSequenceLength, sequence.trained.count == count else {
                throw WireRefusal("a sequence of \(count) ids with \(sequence.trained.count) mask bytes")
            }
            guard sequence.ids.allSatisfy({ $0 >= 0 }), sequence.trained.allSatisfy({ $0 <= 1 }) else { throw WireRefusal("a negative token id or a mask byte other than 0/1") }
            guard sequence.positions.isEmpty || sequence.positions.count == count, sequence.keyStart.isEmpty || sequence.keyStart.count == count else {
                throw WireRefusal("a sequence of \(count) ids with \(sequence.positions.count) positions and \(sequence.keyStart.count) first keys")
            }
            guard sequence.positions.allSatisfy({ $0 >= 0 }) else { throw WireRefusal("a negative position") }
            var previous: Int32 = 0
            for (query, first) in sequence.keyStart.enumerated() {
                guard first >= previous, Int(first) <= query else { throw WireRefusal("query \(query)'s first key \(first) is not within \(previous)...\(query)") }
                previous = first
            }
            sequences.append(TrainingSequenceSpec(ids: sequence.ids.map(Int.init), trained: sequence.trained.map { $0 != 0 },
                                                  positions: sequence.positions.isEmpty ? nil : sequence.positions.map(Int.init),
                                                  keyStart: sequence.keyStart.isEmpty ? nil : sequence.keyStart.map(Int.init)))
        }
        return GradientTaskSpec(parameterVersion: task.parameterVersion, step: Int(task.step), microBatch: Int(task.microBatch),
                                lossOnly: task.lossOnly, sequences: sequences, dropoutSeeds: task.dropoutSeeds)
    }

    /// An error class is empty or one of `RequestErrorClass`'s names.
    private static func checkErrorClass(_ name: String) throws(WireRefusal) {
        guard name.isEmpty || RequestErrorClass(rawValue: name) != nil else { throw WireRefusal("unknown error class \(name.prefix(40))") }
    }

    private static func envelope(_ bytes: [UInt8]) throws(WireRefusal) -> Refinery_Cluster_Envelope {
        guard bytes.count <= WireLimits.maxMessageBytes else { throw WireRefusal("a message of \(bytes.count) bytes") }
        do { return try Refinery_Cluster_Envelope(serializedBytes: bytes) } catch {
            throw WireRefusal("bytes that are not a protobuf Envelope (\(bytes.count) bytes)")
        }
    }
}
