import Foundation
import RefineryCore
import RefineryText
import Testing
@testable import RefineryModel

/// BERT sequence classifiers against transformers' AutoModelForSequenceClassification
/// (scripts/make_classifier_fixtures.py: a regression head and a three-class head).
@Suite struct SequenceClassifierParityTests {
    @Test(arguments: ["bert-classifier-regression", "bert-classifier-classes"])
    func logitsMatchTransformers(name: String) throws {
        let expected = try ModelFixtures.expected(name)
        let texts = try #require(expected["texts"]?.arrayValue).compactMap(\.stringValue)
        let want = try #require(expected["logits"]?.arrayValue).map { $0.arrayValue?.compactMap { $0.doubleValue.map(Float.init) } ?? [] }
        let tokenIDs = try #require(expected["token_ids"]?.arrayValue).map(ModelFixtures.ints)
        let classifier = try BertSequenceClassifier(directory: ModelFixtures.directory(name), dtype: .float32)
        #expect(classifier.maxLength == 32)
        for (text, ids) in zip(texts, tokenIDs) { #expect(classifier.tokenIDs(text) == ids, "ids of \(text.prefix(30))") }
        let got = try classifier.logits(texts, batchTokens: 40)
        #expect(got.count == want.count)
        for (index, (g, w)) in zip(got, want).enumerated() {
            #expect(g.count == w.count)
            let worst = zip(g, w).map { abs($0 - $1) }.max() ?? 1
            #expect(worst <= 1e-4, "\(name) text \(index): \(g) vs \(w)")
        }
        let bf16 = try BertSequenceClassifier(directory: ModelFixtures.directory(name), dtype: .bfloat16).logits(texts)
        for (g, w) in zip(bf16, want) {
            #expect(zip(g, w).allSatisfy { abs($0 - $1) <= 0.05 * max(1, abs($1)) }, "bf16 \(g) vs \(w)")
        }
        // int8 products (dynamically quantized layers): close to transformers' float32, not equal to
        // ours. These random fixtures (initializer_range 0.3) amplify rounding: PyTorch's own
        // quantize_dynamic moves their logits by 0.043 / 0.035 on average (regression / classes) and
        // 0.077 at most (measured with scripts/requirements.txt's torch); these products by 0.037 /
        // 0.015 and 0.071 at most. Bounds: mean 0.04, largest 0.1.
        let int8 = try BertSequenceClassifier(directory: ModelFixtures.directory(name), dtype: .float32, int8Products: true)
        #expect(int8.encoder.int8Products)
        let int8Logits = try int8.logits(texts, batchTokens: 40)
        #expect(int8Logits != got, "the int8 products changed nothing: were they run?")
        let deviations = zip(int8Logits, want).flatMap { g, w in zip(g, w).map { abs($0 - $1) } }
        let mean = deviations.reduce(0, +) / Float(max(1, deviations.count))
        #expect(deviations.count == want.count * want[0].count && mean <= 0.04 && (deviations.max() ?? 1) <= 0.1,
                "int8 logits \(int8Logits) against \(want)")
        #expect { try BertSequenceClassifier(directory: ModelFixtures.directory(name), dtype: .bfloat16, int8Products: true) } throws: {
            "\($0)".contains("bfloat16 does not combine")
        }
        if name.hasSuffix("classes") {
            #expect(classifier.labels == ["low", "medium", "high"] && classifier.problemType == "single_label_classification")
        } else {
            #expect(classifier.labels.count == 1 && classifier.problemType == "regression")
        }
    }

    @Test func llamaRewardModelMatchesTransformers() throws {
        let expected = try ModelFixtures.expected("llama-reward")
        let conversations = try #require(expected["conversations"]?.arrayValue).map { conversation in
            (conversation.arrayValue ?? []).map { ChatMessage(role: $0["role"]?.stringValue ?? "", content: $0["content"]?.stringValue ?? "") }
        }
        let tokenIDs = try #require(expected["token_ids"]?.arrayValue).map(ModelFixtures.ints)
        let want = try #require(expected["logits"]?.arrayValue).map { $0.arrayValue?.compactMap { $0.doubleValue.map(Float.init) } ?? [] }
        let scorer = try LlamaSequenceScorer(directory: ModelFixtures.directory("llama-reward"), dtype: .float32)
        #expect(scorer.labels == ["helpfulness", "harmlessness"] && scorer.padTokenID == 4)
        let ids = try conversations.map(scorer.tokenIDs)
        #expect(ids == tokenIDs, "rendered through the chat template and tokenized as transformers does")
        #expect(ids.allSatisfy { $0.last == 4 && scorer.pooledPosition($0) == $0.count - 2 }, "read before the closing <|eot_id|> (the pad token)")
        for batchTokens in [1, 4096] {
            let got = try scorer.scores(ids, batchTokens: batchTokens)
            for (index, (g, w)) in zip(got, want).enumerated() {
                let worst = zip(g, w).map { abs($0 - $1) }.max() ?? 1
                #expect(g.count == 2 && worst <= 1e-4, "conversation \(index), batch \(batchTokens): \(g) vs \(w)")
            }
        }
        let bf16 = try LlamaSequenceScorer(directory: ModelFixtures.directory("llama-reward"), dtype: .bfloat16).scores(ids)
        for (g, w) in zip(bf16, want) { #expect(zip(g, w).allSatisfy { abs($0 - $1) <= 0.05 * max(1, abs($1)) }, "bf16 \(g) vs \(w)") }
        #expect { try LlamaSequenceScorer(directory: ModelFixtures.directory("llama-gqa")) } throws: { "\($0)".contains("no score.weight") }
    }

    @Test func anEncoderWithoutAHeadIsRefused() throws {
        #expect { try BertSequenceClassifier(directory: ModelFixtures.directory("minibert")) } throws: {
            "\($0)".contains("not a sequence classifier")
        }
    }
}
