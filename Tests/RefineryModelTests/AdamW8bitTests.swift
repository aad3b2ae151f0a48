import Foundation
import Testing
@testable import RefineryModel
@testable import RefineryTensor

/// 8-bit AdamW against bitsandbytes 0.50.2's `AdamW8bit` on the CPU (scripts/make_adamw8bit_fixture.py):
/// three parameters — "big" [20, 220] (17 whole blocks of 256 and one of 48; an all-zero gradient
/// block at step 3, an outlier gradient of 40 at step 5), "exact" [4096] (16 blocks, exactly the
/// 8-bit minimum) and "small" [4095] (float32 moments) — for 8 steps at lr 2e-3, weight decay 0.01
/// on the first two. bitsandbytes re-quantizes the moments with its portable kernel (the nearest
/// code); the script checks that numpy, following the stated rules, gets the same codes.
@Suite struct AdamW8bitTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/adamw8bit")
    static let lr = 2e-3

    static func floats(_ name: String) throws -> [Float] {
        let data = try Data(contentsOf: root.appendingPathComponent(name))
        return data.withUnsafeBytes { raw in (0..<(data.count / 4)).map { Float(bitPattern: UInt32(littleEndian: raw.load(fromByteOffset: $0 * 4, as: UInt32.self))) } }
    }

    static func bytes(_ name: String) throws -> [UInt8] { [UInt8](try Data(contentsOf: root.appendingPathComponent(name))) }

    static let shapes: [String: [Int]] = ["big": [20, 220], "exact": [4096], "small": [4095]]

    /// The parameter `name` holding `values`, with `gradient`; "small" does not decay (its name says so).
    static func parameter(_ name: String, values: [Float], gradient: [Float]) throws -> TrainableParameter {
        let shape = try #require(shapes[name])
        let parameter = TrainableParameter(name: name == "small" ? "small.norm" : name, value: Tensor(shape: shape, values: values))
        parameter.gradient.pointer.update(from: gradient, count: gradient.count)
        return parameter
    }

    /// bitsandbytes' state after step `step` of `name` as the entries `AdamW.restore` reads.
    static func savedState(_ name: String, step: Int, as parameterName: String) throws -> [String: [UInt8]] {
        if name == "small" {
            return ["m/" + parameterName: try bytes("small.m.\(step).f32"), "v/" + parameterName: try bytes("small.v.\(step).f32")]
        }
        return ["m8/" + parameterName: try bytes("\(name).m_codes.\(step).u8"), "m8_absmax/" + parameterName: try bytes("\(name).m_absmax.\(step).f32"),
                "v8/" + parameterName: try bytes("\(name).v_codes.\(step).u8"), "v8_absmax/" + parameterName: try bytes("\(name).v_absmax.\(step).f32")]
    }

    /// The largest |got − want| relative to the largest |want| (infinite when the counts differ).
    static func largestDifference(_ tensor: Tensor, _ want: [Float]) -> Float {
        guard tensor.count == want.count else { return .infinity }
        let scale = want.map { abs($0) }.max() ?? 0
        return (0..<want.count).map { abs(tensor.pointer[$0] - want[$0]) }.max().map { $0 / max(scale, .leastNormalMagnitude) } ?? 0
    }

    @Test func dynamicMapsEqualBitsandbytes() throws {
        #expect(DynamicMap.signed.map(\.bitPattern) == (try Self.floats("signed_map.f32")).map(\.bitPattern))
        #expect(DynamicMap.unsigned.map(\.bitPattern) == (try Self.floats("unsigned_map.f32")).map(\.bitPattern))
        #expect(DynamicMap.unsigned.first == 0 && DynamicMap.unsigned.last == 1 && DynamicMap.unsigned.count == 256)
    }

    /// Each step from bitsandbytes' own state before it: the new codes equal bitsandbytes' codes
    /// exactly and the values and scales agree to float32 rounding.
    @Test(arguments: ["big", "exact", "small"])
    func everyStepFromBitsandbytesStateEqualsItsStep(name: String) throws {
        for step in 1...8 {
            let before = step == 1 ? try Self.floats("\(name).initial.f32") : try Self.floats("\(name).param.\(step - 1).f32")
            let parameter = try Self.parameter(name, values: before, gradient: try Self.floats("\(name).grad.\(step).f32"))
            let optimizer = AdamW(weightDecay: 0.01, eightBit: true)
            if step > 1 { try optimizer.restore(step: step - 1, bytes: try Self.savedState(name, step: step - 1, as: parameter.name), parameters: [parameter]) }
            optimizer.step([parameter], learningRate: Self.lr)
            let want = try Self.floats("\(name).param.\(step).f32")
            let got = Array(UnsafeBufferPointer(start: parameter.value.pointer, count: parameter.value.count))
            let largest = zip(got, want).map { abs($0 - $1) }.max() ?? .infinity
            if name == "small" {
                // Float32 moments take torch.optim.AdamW's formula (TrainingParityTests holds it to
                // torch); bitsandbytes' 32-bit path computes the same update in another order
                // (m / (√v + eps·c2) · (−lr·c2/c1)), so they agree to a few roundings.
                #expect(largest <= 3e-8, "small step \(step): values differ by \(largest)")
                #expect(optimizer.eightBitMoments.isEmpty, "4,095 values keep float32 moments")
                let m = try #require(optimizer.firstMoments[parameter.name]), v = try #require(optimizer.secondMoments[parameter.name])
                #expect(Self.largestDifference(m, try Self.floats("small.m.\(step).f32")) <= 1e-6, "small step \(step): first moment")
                #expect(Self.largestDifference(v, try Self.floats("small.v.\(step).f32")) <= 1e-6, "small step \(step): second moment")
                continue
            }
            // Values ~0.02: one float32 rounding step there is 1.9e-9.
            #expect(largest <= 1e-8, "\(name) step \(step): values differ by \(largest)")
            let moments = try #require(optimizer.eightBitMoments[name], "\(name) keeps 8-bit moments")
            let parts = moments.parts
            #expect(parts.firstCodes == (try Self.bytes("\(name).m_codes.\(step).u8")), "\(name) step \(step): first-moment codes")
            #expect(parts.secondCodes == (try Self.bytes("\(name).v_codes.\(step).u8")), "\(name) step \(step): second-moment codes")
            for (key, got) in [("m_absmax", parts.firstScales), ("v_absmax", parts.secondScales)] {
                let want = try Self.floats("\(name).\(key).\(step).f32")
                #expect(got.count == want.count && zip(got, want).allSatisfy { abs($0 - $1) <= 2e-7 * abs($1) }, "\(name) step \(step): \(key)")
            }
        }
    }

    /// Eight steps from zero moments, Refinery's state only: the run stays with bitsandbytes'.
    @Test func eightStepsFromScratchStayWithBitsandbytes() throws {
        let names = ["big", "exact", "small"]
        let parameters = try names.map { try Self.parameter($0, values: try Self.floats("\($0).initial.f32"), gradient: try Self.floats("\($0).grad.1.f32")) }
        let optimizer = AdamW(weightDecay: 0.01, eightBit: true)
        for step in 1...8 {
            for (name, parameter) in zip(names, parameters) {
                let gradient = try Self.floats("\(name).grad.\(step).f32")
                parameter.gradient.pointer.update(from: gradient, count: gradient.count)
            }
            optimizer.step(parameters, learningRate: Self.lr)
        }
        for (name, parameter) in zip(names, parameters) {
            let want = try Self.floats("\(name).param.8.f32")
            let got = Array(UnsafeBufferPointer(start: parameter.value.pointer, count: parameter.value.count))
            let largest = zip(got, want).map { abs($0 - $1) }.max() ?? .infinity
            #expect(largest <= 2e-8, "\(name): after 8 steps the values differ by \(largest) (one step moves them by up to 2e-3)")
        }
        for name in ["big", "exact"] {
            let parts = try #require(optimizer.eightBitMoments[name]).parts
            let differing = zip(parts.firstCodes, try Self.bytes("\(name).m_codes.8.u8")).filter { $0 != $1 }.count
                + zip(parts.secondCodes, try Self.bytes("\(name).v_codes.8.u8")).filter { $0 != $1 }.count
            #expect(differing == 0, "\(name): \(differing) codes differ after 8 steps")
        }
    }

    @Test func stateEntriesRoundTripAndRefuseTheOtherOptimizer() throws {
        let parameter = try Self.parameter("big", values: try Self.floats("big.initial.f32"), gradient: try Self.floats("big.grad.1.f32"))
        let optimizer = AdamW(weightDecay: 0.01, eightBit: true)
        optimizer.step([parameter], learningRate: Self.lr)
        let entries = optimizer.stateEntries()
        #expect(entries.map(\.name) == ["m8/big", "m8_absmax/big", "v8/big", "v8_absmax/big"])
        #expect(entries[0].dtype == .u8 && entries[0].bytes.count == 4400 && entries[1].bytes.count == 18 * 4)
        let saved = Dictionary(uniqueKeysWithValues: entries.map { ($0.name, $0.bytes) })
        let restored = AdamW(weightDecay: 0.01, eightBit: true)
        try restored.restore(step: 1, bytes: saved, parameters: [parameter])
        #expect(restored.stateEntries().map(\.bytes) == entries.map(\.bytes))
        #expect(restored.stepCount == 1)

        let float32 = AdamW(weightDecay: 0.01)
        #expect(throws: ModelError.self) { try float32.restore(step: 1, bytes: saved, parameters: [parameter]) }
        var truncated = saved
        truncated["v8_absmax/big"] = Array(saved["v8_absmax/big"]!.dropLast(4))
        #expect(throws: ModelError.self) { try restored.restore(step: 1, bytes: truncated, parameters: [parameter]) }
        var negative = saved
        negative["m8_absmax/big"] = [Float](repeating: -1, count: 18).withUnsafeBytes { Array($0) }
        #expect(throws: ModelError.self) { try restored.restore(step: 1, bytes: negative, parameters: [parameter]) }
        // A refused restore leaves the state it had.
        #expect(restored.stateEntries().map(\.bytes) == entries.map(\.bytes))
        let floatEntries = Dictionary(uniqueKeysWithValues: float32.stateEntries().map { ($0.name, $0.bytes) })
        #expect(floatEntries.isEmpty)
    }
}
