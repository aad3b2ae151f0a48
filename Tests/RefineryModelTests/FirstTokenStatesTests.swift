import Foundation
import RefineryTensor
import Testing
@testable import RefineryModel

/// `firstTokenStates` (the last layer for the first rows only) against the first rows of the full
/// `hiddenStates`, on the fixture classifier's encoder: an empty sequence, one shorter than the
/// bfloat16 attention's 16 rows, and longer ones.
@Suite struct FirstTokenStatesTests {
    @Test(arguments: [ComputeDType.float32, .bfloat16])
    func firstTokenStatesEqualTheFullForwardsFirstRows(dtype: ComputeDType) throws {
        let encoder = try BertSequenceClassifier(directory: ModelFixtures.directory("bert-classifier-regression"), dtype: .fixed(dtype)).encoder
        let h = encoder.config.hiddenSize, vocab = encoder.config.vocabSize
        let lengths = [7, 0, 20, 32, 16]
        let sequences = lengths.enumerated().map { index, length in (0..<length).map { (index * 31 + $0 * 17) % vocab } }
        let (states, starts) = try encoder.hiddenStates(sequences)
        let firsts = try encoder.firstTokenStates(sequences)
        #expect(firsts.shape == [sequences.count, h])
        // float32: the same sums in another order; bfloat16: the first rows' attention sums in float32
        // where the packed one runs oneDNN's bfloat16 products (probabilities rounded alike).
        let tolerance: Float = dtype == .float32 ? 1e-5 : 3e-2
        for (s, length) in lengths.enumerated() {
            let got = (0..<h).map { firsts.pointer[s * h + $0] }
            if length == 0 {
                #expect(got.allSatisfy { $0 == 0 }, "an empty sequence's row is zero")
                continue
            }
            let want = (0..<h).map { states.pointer[starts[s] * h + $0] }
            let worst = zip(got, want).map { abs($0 - $1) }.max() ?? .infinity
            #expect(worst <= tolerance, "\(dtype) sequence \(s) (\(length) tokens): largest difference \(worst)")
        }
    }
}
