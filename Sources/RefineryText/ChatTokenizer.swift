import Foundation
import RefineryCore

/// A model folder's text side: `tokenizer.json`, `tokenizer_config.json` (special tokens,
/// `chat_template`) and `chat_template.jinja`.
public struct ChatTokenizer: Sendable {
    public let tokenizer: Tokenizer
    /// The chat template in use, if any.
    public let template: ChatTemplate?
    /// Where the template came from (for messages): a file, or `built-in NAME`.
    public let templateOrigin: String?
    public let bosToken: String?
    public let eosToken: String?

    /// Loads the tokenizer files of `directory`; `templateName` picks a built-in template instead
    /// of the model's own.
    public init(directory: URL, templateName: String? = nil) throws {
        let fm = FileManager.default
        let tokenizerURL = directory.appendingPathComponent("tokenizer.json")
        guard fm.fileExists(atPath: tokenizerURL.path) else {
            throw TextError("no tokenizer.json in \(directory.path): point --model at a Hugging Face model folder (SentencePiece-only tokenizer.model files are not supported)")
        }
        tokenizer = try Tokenizer(contentsOf: tokenizerURL)
        var config: JSONValue = .object([])
        let configURL = directory.appendingPathComponent("tokenizer_config.json")
        if fm.fileExists(atPath: configURL.path) {
            do { config = try JSONValue.parse(bytes: Array(try Data(contentsOf: configURL))) } catch {
                throw TextError("\(configURL.path) is not valid JSON: \(error)")
            }
        }
        func tokenText(_ value: JSONValue?) -> String? {
            value?.stringValue ?? value?["content"]?.stringValue
        }
        bosToken = tokenText(config["bos_token"])
        eosToken = tokenText(config["eos_token"])

        if let templateName {
            guard let source = BuiltinTemplates.source(named: templateName) else {
                throw TextError("unknown template \"\(templateName)\"; built-in templates: \(BuiltinTemplates.names.joined(separator: ", "))")
            }
            template = try ChatTemplate(source)
            templateOrigin = "built-in \(templateName)"
            return
        }
        var source: String? = nil
        var origin: String? = nil
        let jinjaURL = directory.appendingPathComponent("chat_template.jinja")
        if fm.fileExists(atPath: jinjaURL.path) {
            guard let text = try? String(contentsOf: jinjaURL, encoding: .utf8) else {
                throw TextError("\(jinjaURL.path) is not readable UTF-8 text")
            }
            source = text
            origin = jinjaURL.path
        } else if let value = config["chat_template"] {
            if let text = value.stringValue {
                source = text
            } else if let list = value.arrayValue {
                let named = list.compactMap { item -> (String, String)? in
                    guard let name = item["name"]?.stringValue, let text = item["template"]?.stringValue else { return nil }
                    return (name, text)
                }
                source = named.first(where: { $0.0 == "default" })?.1 ?? named.first?.1
            }
            origin = configURL.path
        }
        if let source {
            do { template = try ChatTemplate(source) } catch let error as TemplateError {
                throw TextError("the chat template in \(origin ?? directory.path) does not parse: \(error.message). Use --template to pick a built-in one.")
            }
            templateOrigin = origin
        } else {
            template = nil
            templateOrigin = nil
        }
    }

    /// The template to use for chat samples: the model's, else `alpaca` (DESIGN §3.1).
    public func effectiveTemplate() throws -> ChatTemplate {
        if let template { return template }
        guard let source = BuiltinTemplates.source(named: "alpaca") else { throw TextError("alpaca template missing") }
        return try ChatTemplate(source)
    }

    /// Renders a conversation to text.
    public func render(_ messages: [ChatMessage], addGenerationPrompt: Bool = false) throws -> String {
        do {
            return try effectiveTemplate().render(messages: messages, addGenerationPrompt: addGenerationPrompt,
                                                  bosToken: bosToken ?? "", eosToken: eosToken ?? "")
        } catch let error as TemplateError {
            throw TextError("chat template \(templateOrigin ?? "alpaca") failed: \(error.message)")
        }
    }

    /// Token ids that end generation: EOS and the special end-of-turn markers the tokenizer knows.
    public var stopTokenIDs: Set<Int> {
        var ids = Set<Int>()
        if let eosToken, let id = tokenizer.id(of: eosToken) { ids.insert(id) }
        for marker in ["<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>", "<|endoftext|>", "</s>"] {
            if let id = tokenizer.id(of: marker), tokenizer.addedTokens.contains(where: { $0.id == id && $0.special }) { ids.insert(id) }
        }
        return ids
    }
}
