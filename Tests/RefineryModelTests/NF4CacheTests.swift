import Foundation
import Testing
@testable import RefineryModel
import RefineryTensor

/// The on-disk NF4 cache: the first QLoRA load writes it, the next reads it — the same bits as
/// quantizing again — a changed checkpoint gets a file of its own, and a damaged file is refused
/// with its path.
@Suite struct NF4CacheTests {
    static func projections(_ model: LlamaModel) -> [NF4Matrix] {
        model.layers.flatMap { [$0.qProj, $0.kProj, $0.vProj, $0.oProj, $0.gateProj, $0.upProj, $0.downProj].compactMap(\.nf4) }
    }

    static func same(_ a: [NF4Matrix], _ b: [NF4Matrix]) -> Bool {
        a.count == b.count && zip(a, b).allSatisfy {
            $0.shape == $1.shape && $0.codes == $1.codes && $0.absmaxCodes == $1.absmaxCodes
                && $0.absmaxScales.map(\.bitPattern) == $1.absmaxScales.map(\.bitPattern) && $0.offset.bitPattern == $1.offset.bitPattern
        }
    }

    @Test func aSecondLoadReadsTheCacheAndGetsTheSameBits() throws {
        let source = ModelFixtures.directory(TrainingEquivalenceTests.name)
        let model = try ModelFixtures.temporaryDirectory().appendingPathComponent("model")
        try FileManager.default.copyItem(at: source, to: model)
        let cache = NF4Cache(directory: try ModelFixtures.temporaryDirectory().appendingPathComponent("nf4"))
        let plain = try LlamaModel(directory: model, dtype: .fixed(.bfloat16), projections: .nf4)
        #expect(plain.nf4CacheReport == nil)

        let first = try LlamaModel(directory: model, dtype: .fixed(.bfloat16), projections: .nf4, nf4Cache: cache)
        #expect(first.nf4CacheReport?.hasPrefix("wrote") == true, "\(first.nf4CacheReport ?? "")")
        let file = cache.file(for: try Checkpoint(directory: model))
        #expect(FileManager.default.fileExists(atPath: file.path))
        let second = try LlamaModel(directory: model, dtype: .fixed(.bfloat16), projections: .nf4, nf4Cache: cache)
        #expect(second.nf4CacheReport?.hasPrefix("read") == true, "\(second.nf4CacheReport ?? "")")
        #expect(Self.projections(plain).count == 7 * plain.layers.count)
        #expect(Self.same(Self.projections(plain), Self.projections(first)))
        #expect(Self.same(Self.projections(plain), Self.projections(second)))
        // The merge base (dequantized) comes from the cache as well, equal to a fresh round trip.
        let roundTrip = try LlamaModel(directory: model, dtype: .float32, projections: .nf4RoundTrip)
        let cachedRoundTrip = try LlamaModel(directory: model, dtype: .float32, projections: .nf4RoundTrip, nf4Cache: cache)
        #expect(cachedRoundTrip.nf4CacheReport?.hasPrefix("read") == true)
        let a = roundTrip.layers[1].downProj.floatValues(), b = cachedRoundTrip.layers[1].downProj.floatValues()
        #expect((0..<a.count).allSatisfy { a.pointer[$0].bitPattern == b.pointer[$0].bitPattern })

        // A rewritten checkpoint has another fingerprint: its own cache file, never the stale one.
        let weights = model.appendingPathComponent("model-00001-of-00009.safetensors")
        try FileManager.default.setAttributes([.modificationDate: Date(timeIntervalSinceNow: 3600)], ofItemAtPath: weights.path)
        let changed = try LlamaModel(directory: model, dtype: .fixed(.bfloat16), projections: .nf4, nf4Cache: cache)
        #expect(changed.nf4CacheReport?.hasPrefix("wrote") == true)
        #expect(cache.file(for: try Checkpoint(directory: model)) != file)

        // A damaged cache file is refused, naming it and the fix.
        let current = cache.file(for: try Checkpoint(directory: model))
        let bytes = try Data(contentsOf: current)
        try bytes.prefix(bytes.count - 100).write(to: current)
        #expect {
            _ = try LlamaModel(directory: model, dtype: .fixed(.bfloat16), projections: .nf4, nf4Cache: cache)
        } throws: { error in
            let text = "\(error)"
            return text.contains(current.path) && text.contains("delete")
        }
    }

    @Test func aCacheThatCannotBeWrittenIsReportedAndTheLoadGoesOn() throws {
        let blocker = try ModelFixtures.temporaryDirectory().appendingPathComponent("file")
        try Data("not a folder".utf8).write(to: blocker)
        let model = try LlamaModel(directory: ModelFixtures.directory(TrainingEquivalenceTests.name), dtype: .fixed(.bfloat16),
                                   projections: .nf4, nf4Cache: NF4Cache(directory: blocker.appendingPathComponent("nf4")))
        #expect(model.hasQuantizedProjections)
        #expect(model.nf4CacheReport?.contains("could not write") == true, "\(model.nf4CacheReport ?? "")")
    }
}
