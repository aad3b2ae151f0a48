import Foundation
import RefineryCore
import Testing
@testable import RefineryText

/// Constrained decoding to a JSON schema: the byte matcher accepts exactly the prefixes of valid
/// documents and completes any of them; random walks (bytes, then real tokenizers' tokens, the
/// budget always running out) end in documents that parse and fit the schema; unsupported schema
/// keywords are refused with their place.
@Suite struct JSONConstraintTests {
    static let pairs = try! JSONSchemaNode.compile(try! JSONValue.parse("""
        {"type":"object","additionalProperties":false,"required":["pairs","n","tag","ok"],"properties":{
          "pairs":{"type":"array","minItems":2,"maxItems":3,"items":{"type":"object","additionalProperties":false,
             "required":["instruction","answer"],"properties":{"instruction":{"type":"string","minLength":1,"pattern":"\\\\S"},
             "answer":{"type":"string","maxLength":12}}}},
          "n":{"type":["integer","null"]},
          "tag":{"enum":["red","green",7]},
          "ok":{"type":"boolean"},
          "extra":{"$ref":"#/$defs/score"}},
         "$defs":{"score":{"type":"number"}}}
        """))

    /// An independent check of a parsed value against a compiled schema.
    static func valid(_ value: JSONValue, _ node: JSONSchemaNode) -> Bool {
        switch node {
        case .anyValue: return true
        case let .object(properties, freeForm):
            guard let fields = value.objectValue else { return false }
            if freeForm { return true }
            return fields.map(\.0) == properties.map(\.name) && zip(fields, properties).allSatisfy { valid($0.0.1, $0.1.node) }
        case let .array(items, minItems, maxItems):
            guard let values = value.arrayValue, values.count >= minItems, values.count <= (maxItems ?? .max) else { return false }
            return values.allSatisfy { valid($0, items) }
        case let .string(minLength, maxLength, needsGraphic):
            guard let text = value.stringValue, text.count >= minLength, text.count <= (maxLength ?? .max) else { return false }
            return !needsGraphic || !text.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty
        case let .number(integer):
            guard value.doubleValue != nil else { return false }
            if integer, case .int = value { return true }
            return !integer
        case .boolean: if case .bool = value { return true } else { return false }
        case .null: return value == .null
        case let .literals(texts): return texts.contains(Array(value.compactText.utf8))
        case let .choice(options): return options.contains { valid(value, $0) }
        }
    }

    /// Random allowed tokens until the document is complete or the budget is spent.
    static func randomWalk(_ constraint: JSONTokenConstraint, budget: Int, generator: inout SplitMix64) -> [Int] {
        var ids: [Int] = []
        while !constraint.isComplete && ids.count < budget {
            guard let token = constraint.allowedTokens(remaining: budget - ids.count).randomElement(using: &generator) else { break }
            constraint.accept(token)
            ids.append(token)
        }
        return ids
    }

    @Test func theMatcherTakesValidDocumentsAndRefusesTheFirstWrongByte() throws {
        var matcher = JSONMatcher(Self.pairs)
        let good = #"{"pairs":[{"instruction":"Why?","answer":"Because."},{"instruction":"x","answer":""}],"n":null,"tag":7,"ok":false,"extra":-1.5e3}"#
        let fedGood = matcher.feed(Array(good.utf8))
        #expect(fedGood && matcher.isComplete)
        for (bad, why) in [(#"{"pairs":[{"instruction":"","#, "an empty instruction"),
                           (#"{"pairs":[{"instruction":"  ""#, "a blank instruction (pattern non-space)"),
                           (#"{"pairs":[{"instruction":"a","answer":"0123456789abc"#, "an answer over 12 characters"),
                           (#"{"pairs":[{"instruction":"a","answer":"b"}],"#, "one pair of at least two"),
                           (#"{"pairs":[{"instruction":"a","answer":"b"},{"instruction":"a","answer":"b"},{"instruction":"a","answer":"b"},"#, "a fourth pair"),
                           (#"{ "#, "whitespace"), (#"{"pears""#, "another key"), (#"{"pairs":[{"instruction":"a\u"#, "a u-escape"),
                           ("{\"pairs\":[{\"instruction\":\"a\n", "a raw newline"), (#"{"pairs":[],"n":1.5"#, "a fraction in an integer")] {
            var m = JSONMatcher(Self.pairs)
            let fed = m.feed(Array(bad.utf8))
            #expect(!fed, "refused: \(why)")
        }
        // Completions from every prefix of the good document are valid documents.
        for end in 0...good.utf8.count {
            var prefix = JSONMatcher(Self.pairs)
            let fed = prefix.feed(Array(good.utf8.prefix(end)))
            #expect(fed)
            let text = Array(good.utf8.prefix(end)) + prefix.completion
            let value = try JSONValue.parse(bytes: text)
            #expect(Self.valid(value, Self.pairs), "\(String(decoding: text, as: UTF8.self))")
        }
    }

    @Test(arguments: 0..<24) func randomByteWalksEndInValidDocuments(seed: Int) throws {
        var generator = SplitMix64(seed: UInt64(seed))
        var matcher = JSONMatcher(Self.pairs)
        var text: [UInt8] = []
        let budget = 40 + Int(generator.next() % 200)
        let alphabet = Array("{}[]\",:-0123456789.eE+truefalsnabc \\/".utf8) + [0xC3, 0xA9]
        while !matcher.isComplete && text.count < budget {
            // Any byte that keeps a valid prefix whose completion still fits.
            let options = alphabet.filter { byte in
                var next = matcher
                return next.feed(byte) && text.count + 1 + next.completion.count <= budget
            }
            guard let byte = options.randomElement(using: &generator) else { break }
            _ = matcher.feed(byte)
            text.append(byte)
        }
        text += matcher.completion
        #expect(text.count <= max(budget, JSONMatcher.shortest(Self.pairs).count))
        let value = try JSONValue.parse(bytes: text)
        #expect(Self.valid(value, Self.pairs), "\(String(decoding: text, as: UTF8.self))")
    }

    @Test(arguments: ["llama3-bytelevel", "llama2-sentencepiece", "qwen2-bytelevel", "mistral-metaspace"])
    func randomTokenWalksFitTheSchemaAndTheBudget(tokenizerName: String) throws {
        let tokenizer = try Tokenizer(contentsOf: FixtureFiles.root.appendingPathComponent("tokenizers/\(tokenizerName)/tokenizer.json"))
        let vocabulary = TokenVocabulary(tokenizer: tokenizer, vocabularySize: tokenizer.vocabularySize, stopTokens: [])
        var generator = SplitMix64(seed: 7)
        for round in 0..<6 {
            let constraint = JSONTokenConstraint(schema: Self.pairs, vocabulary: vocabulary)
            // From just enough tokens for the shortest document up.
            let budget = constraint.tokensToComplete + round * 8
            let ids = Self.randomWalk(constraint, budget: budget, generator: &generator)
            #expect(constraint.isComplete && ids.count <= budget, "\(tokenizerName) round \(round): \(ids.count) tokens")
            let bytes = ids.flatMap { tokenizer.tokenBytes($0) ?? [] }
            let value = try JSONValue.parse(bytes: bytes)
            #expect(Self.valid(value, Self.pairs), "\(String(decoding: bytes, as: UTF8.self))")
            // The bytes are what the tokenizer decodes.
            #expect(tokenizer.decode(ids) == String(decoding: bytes, as: UTF8.self) || tokenizerName.contains("sentencepiece") || tokenizerName.contains("metaspace"))
        }
    }

    @Test func anyObjectModeAndUnsupportedSchemasAreRefusedByName() throws {
        var object = JSONMatcher(.anyObject)
        let fedObject = object.feed(Array(#"{"a":[1,{"b":null}],"c":"d","e":true}"#.utf8))
        #expect(fedObject && object.isComplete)
        var scalar = JSONMatcher(.anyObject)
        let fedScalar = scalar.feed(Array("1".utf8))
        #expect(!fedScalar, "json_object: an object")
        for (schema, named) in [(#"{"type":"string","pattern":"^a+$"}"#, "pattern"), (#"{"type":"string","format":"email","minimum":1}"#, "minimum"),
                                (#"{"anyOf":[{"type":"object"},{"type":"object","properties":{"a":{}}}]}"#, "alternatives"),
                                (#"{"type":"object","properties":{"a":false}}"#, "false"), (##"{"$ref":"#/$defs/none"}"##, "points nowhere"),
                                (#"{"type":"tuple"}"#, "unknown type"),
                                (#"{"type":"array","minItems":9223372036854775807,"items":{"type":"array","minItems":4096}}"#, "minItems or minLength"),
                                (#"{"type":"string","minLength":4611686018427387904}"#, "minItems or minLength")] {
            #expect(throws: SchemaError.self, "\(schema)") { try JSONSchemaNode.compile(try JSONValue.parse(schema)) }
            do { _ = try JSONSchemaNode.compile(try JSONValue.parse(schema)) } catch { #expect("\(error)".contains(named), "\(error)") }
        }
    }
}

extension JSONConstraintTests {
    /// The model fixture's tiny byte-level vocabulary (700 tokens), a small schema, tight budgets.
    @Test func theFixtureModelsVocabularyCompletesWithinTightBudgets() throws {
        let path = FixtureFiles.root.deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("RefineryModelTests/Fixtures/llama-gqa/tokenizer.json")
        let tokenizer = try Tokenizer(contentsOf: path)
        let vocabulary = TokenVocabulary(tokenizer: tokenizer, vocabularySize: 700, stopTokens: [1])
        let schema = try JSONSchemaNode.compile(try JSONValue.parse(#"{"type":"object","properties":{"a":{"type":"string"},"b":{"type":"integer"}},"required":["a","b"],"additionalProperties":false}"#))
        var generator = SplitMix64(seed: 3)
        let shortest = JSONTokenConstraint(schema: schema, vocabulary: vocabulary).tokensToComplete
        for budget in [shortest, shortest + 3, 60] {
            for _ in 0..<5 {
                let constraint = JSONTokenConstraint(schema: schema, vocabulary: vocabulary)
                let ids = Self.randomWalk(constraint, budget: budget, generator: &generator)
                let text = tokenizer.decode(ids, skipSpecialTokens: true)
                #expect(constraint.isComplete && ids.count <= budget, "budget \(budget): \(ids.count) tokens: \(text)")
                #expect((try? JSONValue.parse(text)).map { Self.valid($0, schema) } == true, "\(text)")
            }
        }
    }
}
