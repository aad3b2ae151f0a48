import Testing
@testable import RefineryCuration

/// Decontamination: exact copies, shared n-grams, short eval texts contained whole, near copies.
@Suite struct DecontaminationTests {
    static let eval = [
        Decontaminator.EvalSample(source: "e.jsonl:1", text: "Which planet in the solar system has the largest number of confirmed moons as of the latest survey?\nSaturn."),
        Decontaminator.EvalSample(source: "e.jsonl:2", text: "What is 17 times 23?"),
        Decontaminator.EvalSample(source: "e.jsonl:3", text: "Explain why the sky appears blue during the day and red at sunset, using the physics of Rayleigh scattering of light by molecules."),
    ]

    @Test func eachKindOfCopyIsFoundAndCleanTextIsNot() {
        let train = [
            "which planet in the SOLAR system has the largest number of confirmed moons as of the latest survey? Saturn",  // exact after normalising
            "Quiz night notes: which planet in the solar system has the largest number of confirmed moons, we asked the room.",  // shares a 13-gram
            "Homework: what is 17 times 23? The answer is 391.",                                            // a short eval text contained whole
            "Explain why the sky appears blue during the day and red at sunset using Rayleigh scattering.", // shorter rewording: no 13-gram
            "Gradient accumulation adds gradients of micro batches before one optimizer step.",              // clean
            "What is 17 times 24?",                                                                          // clean: a different question
        ]
        let found = Decontaminator(ngram: 13).matches(train: train, eval: Self.eval)
        #expect(found[0]?.kind == .exact && found[0]?.eval == 0)
        #expect(found[1]?.kind == .ngram && found[1]?.eval == 0 && found[1]?.ngram?.split(separator: " ").count == 13, "\(String(describing: found[1]))")
        #expect(found[2]?.kind == .ngram && found[2]?.eval == 1 && found[2]?.ngram == "what is 17 times 23", "\(String(describing: found[2]))")
        #expect(found[4] == nil && found[5] == nil)
        // With n-grams longer than the rewording shares, MinHash alone finds a near copy.
        let nearCopy = Self.eval[2].text.replacingOccurrences(of: "blue", with: "azure")
        let byMinHash = Decontaminator(ngram: 40, minHash: MinHashSettings(threshold: 0.5)).matches(train: [nearCopy], eval: Self.eval)
        #expect(byMinHash[0]?.kind == .minhash && byMinHash[0]?.eval == 2, "\(String(describing: byMinHash[0]))")
        #expect(Decontaminator(ngram: 40, minHash: nil).matches(train: [nearCopy], eval: Self.eval)[0] == nil, "MinHash off: not found")
    }
}
