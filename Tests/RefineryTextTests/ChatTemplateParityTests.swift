import Foundation
import RefineryCore
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

/// Where a model's template comes from.
@Suite struct TemplateSourceTests {
    func folder(tokenizerConfig: String, jinja: String? = nil) throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("refinery-tpl-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: FixtureFiles.root.appendingPathComponent("tokenizers/qwen2-bytelevel/tokenizer.json"),
                                         to: url.appendingPathComponent("tokenizer.json"))
        try tokenizerConfig.write(to: url.appendingPathComponent("tokenizer_config.json"), atomically: true, encoding: .utf8)
        if let jinja { try jinja.write(to: url.appendingPathComponent("chat_template.jinja"), atomically: true, encoding: .utf8) }
        return url
    }

    let messages = [ChatMessage(role: "user", content: "Hi")]

    @Test func stringTemplateInTokenizerConfig() throws {
        let chat = try ChatTokenizer(directory: try folder(tokenizerConfig: #"{"eos_token": {"content": "<|im_end|>"}, "chat_template": "{% for m in messages %}[{{ m.content }}]{% endfor %}{{ eos_token }}"}"#))
        #expect(try chat.render(messages) == "[Hi]<|im_end|>")
    }

    @Test func namedTemplateListPicksDefault() throws {
        let config = #"{"chat_template": [{"name": "tool_use", "template": "TOOLS"}, {"name": "default", "template": "DEFAULT {{ messages | length }}"}]}"#
        #expect(try ChatTokenizer(directory: try folder(tokenizerConfig: config)).render(messages) == "DEFAULT 1")
    }

    @Test func jinjaFileWinsAndBuiltinOverrides() throws {
        let directory = try folder(tokenizerConfig: #"{"chat_template": "CONFIG"}"#, jinja: "FILE")
        #expect(try ChatTokenizer(directory: directory).render(messages) == "FILE")
        let builtin = try ChatTokenizer(directory: directory, templateName: "chatml")
        #expect(try builtin.render(messages) == "<|im_start|>user\nHi<|im_end|>\n")
    }

    @Test func noTemplateFallsBackToAlpacaWithEOS() throws {
        let chat = try ChatTokenizer(directory: try folder(tokenizerConfig: #"{"eos_token": "</s>"}"#))
        let text = try chat.render([ChatMessage(role: "user", content: "Say hi"), ChatMessage(role: "assistant", content: "hi")])
        #expect(text.hasSuffix("### Response:\nhi</s>\n\n"))
    }

    @Test func brokenTemplateNamesItsLine() throws {
        let config = #"{"chat_template": "line one\n{% if %}"}"#
        do {
            _ = try ChatTokenizer(directory: try folder(tokenizerConfig: config))
            Issue.record("a broken template must be refused")
        } catch let error as TextError {
            #expect(error.message.contains("line 2") && error.message.contains("--template"), "\(error.message)")
        }
    }
}
