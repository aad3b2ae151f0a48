import Foundation
import RefineryCore
@testable import RefineryCluster
import Testing

/// Mutated envelopes thrown at both sides' decoders and validators: every input is either a
/// checked message or a refusal with a reason, never a crash.
@Suite struct WireFuzzTests {
    typealias Random = SplitMix64

    /// One valid envelope of every message, fields at interesting values.
    static func seeds() throws -> [[UInt8]] {
        var lease = Refinery_Cluster_Lease()
        lease.task = TaskID.microBatch(step: 3, index: 1).message
        lease.epoch = 2
        var hello = Refinery_Cluster_Hello()
        hello.workerID = "w"
        hello.slots = 4
        hello.held = [lease]
        hello.answered = [lease]
        var welcome = Refinery_Cluster_Welcome()
        welcome.heartbeatMs = 1000
        welcome.generation = GenerationWireSettings(baseURL: "http://x/v1", timeout: 10, apiKeyEnv: "K", settings: .init(model: "m")).message
        welcome.training = TrainingWireSettings(method: .lora, lora: .init(), gradientCheckpointing: false, blasThreads: 2).message
        var sequence = Refinery_Cluster_Sequence()
        sequence.ids = [1, 2, 3, 4]
        sequence.trained = Data([0, 1, 1, 1])
        sequence.positions = [0, 1, 0, 1]
        sequence.keyStart = [0, 0, 2, 2]
        var task = Refinery_Cluster_GradientTask()
        task.lease = lease
        task.step = 3
        task.microBatch = 1
        task.sequences = [sequence]
        task.dropoutSeeds = [9]
        var gradient = Refinery_Cluster_GradientResult()
        gradient.lease = lease
        gradient.gradient = Data(repeating: 0, count: 16)
        var generate = Refinery_Cluster_GenerateTask()
        generate.lease = Lease(task: .chunk(5), epoch: 1).message
        generate.chunkID = 5
        generate.text = "Some text."
        var result = LeaseTests.result(for: Lease(task: .chunk(5), epoch: 1))
        result.reason = "r"
        var update = Refinery_Cluster_ParameterUpdate()
        update.values = Data(repeating: 1, count: 8)
        update.count = 2
        var chunk = Refinery_Cluster_ModelFileChunk()
        chunk.names = ["config.json", "model.safetensors"]
        chunk.name = "config.json"
        chunk.data = Data("{}".utf8)
        var request = Refinery_Cluster_ModelFileRequest()
        request.name = "config.json"
        request.offset = 4
        var ack = Refinery_Cluster_ResultAck()
        ack.lease = lease
        var stop = Refinery_Cluster_Stop()
        stop.reason = "done"
        var callTask = Refinery_Cluster_CallTask()
        callTask.lease = Lease(task: .call(3), epoch: 1).message
        callTask.callID = 3
        callTask.call = CallLeaseTests.call("A question?").json.compactText
        callTask.retryAttempts = 3
        callTask.retryBaseDelay = 0.5
        callTask.retryMaxDelay = 4
        callTask.timeoutSeconds = 30
        var callResult = Refinery_Cluster_CallResult()
        callResult.lease = Lease(task: .call(3), epoch: 1).message
        callResult.callID = 3
        callResult.outcome = "answered"
        callResult.content = "{\"score\": 3}"
        callResult.promptTokens = 12
        callResult.cost = 0.001
        callResult.attempts = 1
        let bodies: [Refinery_Cluster_Envelope.OneOf_Body] = [
            .hello(hello), .welcome(welcome), .gradientTask(task), .gradientResult(gradient), .generateTask(generate),
            .generateResult(result), .parameterUpdate(update), .modelFileChunk(chunk), .modelFileRequest(request), .resultAck(ack),
            .stop(stop), .heartbeat(Refinery_Cluster_Heartbeat()), .taskRequest(Refinery_Cluster_TaskRequest()),
            .callTask(callTask), .callResult(callResult),
        ]
        return try bodies.map { try Wire.encode($0) }
    }

    static func mutate(_ seed: [UInt8], _ random: inout Random) -> [UInt8] {
        var bytes = seed
        for _ in 0...random.below(4) {
            switch random.below(7) {
            case 0 where !bytes.isEmpty:  // flip a bit
                let i = random.below(bytes.count)
                bytes[i] ^= UInt8(1 << random.below(8))
            case 1 where !bytes.isEmpty:  // truncate
                bytes.removeLast(random.below(bytes.count) + 1)
            case 2:  // a maximal varint (2^64 − 1) somewhere
                bytes.insert(contentsOf: [UInt8](repeating: 0xFF, count: 9) + [0x01], at: random.below(bytes.count + 1))
            case 3 where !bytes.isEmpty:  // random byte
                bytes[random.below(bytes.count)] = UInt8(truncatingIfNeeded: random.next())
            case 4:  // a huge length prefix
                bytes.insert(contentsOf: [0x2A, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F], at: random.below(bytes.count + 1))
            case 5 where bytes.count > 2:  // duplicate a slice
                let start = random.below(bytes.count - 1)
                let end = min(bytes.count, start + 1 + random.below(16))
                bytes.insert(contentsOf: bytes[start..<end], at: random.below(bytes.count + 1))
            default:  // random garbage
                bytes.append(contentsOf: (0..<random.below(8)).map { _ in UInt8(truncatingIfNeeded: random.next()) })
            }
        }
        return bytes
    }

    @Test func oneHundredThousandMutatedEnvelopesNeverCrashEitherSide() throws {
        let seeds = try Self.seeds()
        // Every seed is a valid message for its receiver.
        for (index, seed) in seeds.enumerated() {
            #expect((try? Wire.fromWorker(seed)) != nil || (try? Wire.fromCoordinator(seed)) != nil, "seed \(index) passes its receiver's checks")
        }
        var random = Random(seed: 0x5EED)
        var accepted = 0, refused = 0
        for round in 0..<100_000 {
            let bytes = Self.mutate(seeds[round % seeds.count], &random)
            do { _ = try Wire.fromWorker(bytes); accepted += 1 } catch { refused += 1; #expect(!error.reason.isEmpty) }
            do { _ = try Wire.fromCoordinator(bytes); accepted += 1 } catch { refused += 1; #expect(!error.reason.isEmpty) }
        }
        #expect(accepted + refused == 200_000 && refused > 100_000)
    }
}
