import Foundation
import RefineryTensor
import Testing
@testable import RefineryModel

/// `firstTokenStates` (the last layer for the first rows only) against the first rows of the full
/// `hiddenStates`, on the fixture classifier's encoder: an empty sequence, one shorter than the
/// bfloat16 attention's 16 rows, and longer ones; in float32, bfloat16 and with int8 products.
@Suite struct FirstTokenStatesTests {
    @Test(arguments: ["float32", "bfloat16", "int8"])
    func firstTokenStatesEqualTheFullForwardsFirstRows(precision: String) throws {
        let dtype: ComputeDType = precision == "bfloat16" ? .bfloat16 : .float32
        let encoder = try BertSequenceClassifier(directory: ModelFixtures.directory("bert-classifier-regression"), dtype: .fixed(dtype),
                                                 int8Products: precision == "int8").encoder
        let h = encoder.config.hiddenSize, vocab = encoder.config.vocabSize
        let lengths = [7, 0, 20, 32, 16]
        let sequences = lengths.enumerated().map { index, length in (0..<length).map { (index * 31 + $0 * 17) % vocab } }
        let (states, starts) = try encoder.hiddenStates(sequences)
        let firsts = try encoder.firstTokenStates(sequences)
        #expect(firsts.shape == [sequences.count, h])
        // float32: the same sums in another order; bfloat16: the first rows' attention sums in float32
        // where the packed one runs oneDNN's bfloat16 products (probabilities rounded alike); int8:
        // float32's attention differences can move a value across a quantization step.
        let tolerance: Float = precision == "float32" ? 1e-5 : 3e-2
        for (s, length) in lengths.enumerated() {
            let got = (0..<h).map { firsts.pointer[s * h + $0] }
            if length == 0 {
                #expect(got.allSatisfy { $0 == 0 }, "an empty sequence's row is zero")
                continue
            }
            let want = (0..<h).map { states.pointer[starts[s] * h + $0] }
            let worst = zip(got, want).map { abs($0 - $1) }.max() ?? .infinity
            #expect(worst <= tolerance, "\(precision) sequence \(s) (\(length) tokens): largest difference \(worst)")
        }
    }
}
