import RefineryText
import Testing
@testable import RefineryCuration

/// The rule filters: each rule drops what it names and nothing else, with its reason.
@Suite struct FilterTests {
    static func pair(_ q: String, _ a: String) -> Sample {
        .chat([ChatMessage(role: "user", content: q), ChatMessage(role: "assistant", content: a)])
    }

    static let good = pair("What does a learning-rate warmup do?",
                           "It raises the learning rate from zero over the first steps, so that the first updates (made with poor moment estimates) stay small.")

    @Test func lengthBoundsInCharactersAndTokens() throws {
        var filter = SampleFilter()
        filter.answerCharacters = 20...10_000
        filter.instructionCharacters = 5...200
        #expect(filter.violation(Self.good) == nil)
        #expect(filter.violation(Self.pair("What?", "Short.")) == "answer has 6 characters, fewer than 20")
        #expect(filter.violation(Self.pair("Hi", String(repeating: "word ", count: 10))) == "instruction has 2 characters, fewer than 5")
        var tokens = SampleFilter()
        tokens.answerTokens = 0...5
        #expect(tokens.problem()?.contains("tokenizer") == true)
    }

    @Test func keywordsPatternsAndRefusals() {
        var filter = SampleFilter()
        filter.excludedKeywords = ["Lorem Ipsum"]
        filter.excludedPatterns = [#"(?i)\bclick here\b"#]
        #expect(filter.violation(Self.good) == nil)
        #expect(filter.violation(Self.pair("Explain lorem ipsum text.", "It is filler text used in layouts and proofs of printed pages.")) == "contains the excluded keyword “Lorem Ipsum”")
        #expect(filter.violation(Self.pair("Where is the manual?", "Click HERE to download the manual of the device.")) == #"matches the excluded pattern (?i)\bclick here\b"#)
        let refusal = filter.violation(Self.pair("Summarise the text.", "As an AI language model, I cannot browse the internet to read it."))
        #expect(refusal?.hasPrefix("refusal or AI boilerplate") == true, "\(refusal ?? "kept")")
        #expect(filter.violation(Self.pair("What is missing?", "The text does not mention the date of the treaty at all.")) != nil)
        filter.dropRefusals = false
        #expect(filter.violation(Self.pair("Summarise the text.", "As an AI language model, I cannot browse the internet to read it.")) == nil)
        filter.excludedPatterns = ["(unclosed"]
        #expect(filter.problem()?.contains("not a valid regular expression") == true)
    }

    @Test func theAnswersLanguage() {
        var filter = SampleFilter()
        filter.language = "en"
        #expect(filter.violation(Self.good) == nil)
        let german = Self.pair("What is a warmup?", "Die Lernrate wird in den ersten Schritten langsam erhöht, damit die ersten Updates klein bleiben und das Training stabil ist.")
        #expect(filter.violation(german) == "the answer looks like de, not en")
        #expect(filter.violation(Self.pair("Translate.", "学习率在最初的几步中逐渐提高，这样最初的更新就会很小。")) == "the answer looks like zh, not en")
        #expect(LanguageGuess.of("Le taux d'apprentissage est augmenté pendant les premières étapes pour que les mises à jour restent petites.") == "fr")
        #expect(LanguageGuess.of("ok") == nil, "too short to say")
        filter.language = "xx"
        #expect(filter.problem()?.contains("not one the check knows") == true)
    }

    @Test func theAnswersForm() {
        let filter = SampleFilter()
        #expect(filter.violation(Self.pair("Show code.", "Here:\n```python\nprint((1, 2))\n```\nDone (really).")) == nil)
        #expect(filter.violation(Self.pair("Show code.", "Here:\n```python\nprint(1)\n")) == "malformed answer: a ``` code block is never closed")
        #expect(filter.violation(Self.pair("Show JSON.", "```json\n{\"a\": [1, 2}\n```")) == "malformed answer: a ```json block does not parse as JSON")
        #expect(filter.violation(Self.pair("Explain.", "The call f(x is missing its end, and that is a problem in the answer.")) == "malformed answer: “(” is never closed")
        #expect(filter.violation(Self.pair("Explain.", "He said \"stop and left without another word to anyone in the room.")) == "malformed answer: a double quote is never closed")
        var json = SampleFilter()
        json.answersAreJSON = true
        #expect(json.violation(Self.pair("Give JSON.", "{\"name\": \"x\", \"size\": 3}")) == nil)
        #expect(json.violation(Self.pair("Give JSON.", "```json\n{\"name\": \"x\"}\n```")) == nil)
        #expect(json.violation(Self.pair("Give JSON.", "name: x")) == "the answer is not valid JSON")
    }
}
