import Foundation
import Testing
@testable import RefineryText

/// Rendering parity with transformers' `apply_chat_template` on the fixture templates.
@Suite struct ChatTemplateParityTests {
    static func messages(_ json: JSONValue?) -> [ChatMessage] {
        (json?.arrayValue ?? []).map { item in
            ChatMessage(role: item["role"]?.stringValue ?? "", content: item["content"]?.stringValue ?? "")
        }
    }

    @Test func everyFixtureCaseRendersAsTransformers() throws {
        let fixture = try FixtureFiles.json("templates/cases.json")
        let templates = try #require(fixture["templates"]?.objectValue)
        var compiled: [String: ChatTemplate] = [:]
        for (name, source) in templates {
            let text = try #require(source.stringValue)
            compiled[name] = try ChatTemplate(text)
        }
        let cases = try #require(fixture["cases"]?.arrayValue)
        #expect(cases.count >= 60)
        var errorsSeen = 0
        for testCase in cases {
            let name = try #require(testCase["template"]?.stringValue)
            let template = try #require(compiled[name])
            let label = "\(name) conversation \(testCase["conversation"]?.intValue ?? -1) gen=\(testCase["add_generation_prompt"]?.boolValue ?? false)"
            let render = {
                try template.render(
                    messages: Self.messages(testCase["messages"]),
                    addGenerationPrompt: testCase["add_generation_prompt"]?.boolValue ?? false,
                    bosToken: testCase["bos_token"]?.stringValue, eosToken: testCase["eos_token"]?.stringValue)
            }
            if let expectedError = testCase["error"]?.stringValue {
                errorsSeen += 1
                do {
                    _ = try render()
                    Issue.record("\(label): expected the template to raise \(expectedError)")
                } catch let error as TemplateError {
                    #expect(error.raisedByTemplate, "\(label): \(error)")
                    #expect(error.message == expectedError, "\(label)")
                }
            } else {
                let expected = try #require(testCase["expected"]?.stringValue)
                let rendered = try render()
                #expect(rendered == expected, "\(label):\n\(rendered.debugDescription)\nvs\n\(expected.debugDescription)")
            }
        }
        #expect(errorsSeen > 0)
    }

    @Test func builtinTemplatesAreTheFixtureTexts() throws {
        let fixture = try FixtureFiles.json("templates/cases.json")
        let builtinList = fixture["builtin"]?.arrayValue ?? []
        let builtin = builtinList.compactMap { $0.stringValue }
        #expect(!builtin.isEmpty)
        #expect(Set(builtin) == Set(BuiltinTemplates.names))
        for name in builtin {
            #expect(BuiltinTemplates.source(named: name) == fixture["templates"]?[name]?.stringValue, "built-in \(name) drifted from scripts/templates.py")
        }
    }
}
