import Foundation
import RefineryCore
import RefineryModel

/// The id, time and model every object of one response carries, and the JSON shapes of the
/// OpenAI API: whole responses, streamed chunks, usage, logprobs.
struct ResponseIdentity: Sendable {
    let id: String
    let created: Int
    let model: String
    let kind: CompletionJob.Kind

    init(job: CompletionJob) {
        let prefix = job.kind == .chat ? "chatcmpl-" : "cmpl-"
        id = prefix + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased().prefix(24)
        created = Int(Date().timeIntervalSince1970)
        model = job.model
        kind = job.kind
    }

    private var object: String { kind == .chat ? "chat.completion" : "text_completion" }

    func usage(_ tokens: [Int], job: CompletionJob) -> JSONValue {
        let completion = tokens.reduce(0, +)
        return .object([("prompt_tokens", .int(job.prompt.count)), ("completion_tokens", .int(completion)),
                        ("total_tokens", .int(job.prompt.count + completion))])
    }

    /// A whole (non-streamed) response.
    func whole(_ choices: [OpenAIServer.ChoiceResult], job: CompletionJob, served: ServedModel) -> JSONValue {
        let items: [JSONValue] = choices.enumerated().map { index, choice in
            let logprobs = job.logprobs == nil ? JSONValue.null : logprobsJSON(choice.text.logprobs, served: served)
            if kind == .chat {
                return .object([("index", .int(index)),
                                ("message", .object([("role", .string("assistant")), ("content", .string(choice.text.text)), ("refusal", .null)])),
                                ("logprobs", logprobs), ("finish_reason", .string(choice.finishReason.rawValue))])
            }
            return .object([("index", .int(index)), ("text", .string(choice.text.text)), ("logprobs", logprobs),
                            ("finish_reason", .string(choice.finishReason.rawValue))])
        }
        return .object([("id", .string(id)), ("object", .string(object)), ("created", .int(created)), ("model", .string(model)),
                        ("system_fingerprint", .null), ("choices", .array(items)), ("usage", usage(choices.map(\.text.tokens), job: job))])
    }

    /// One streamed chunk of choice `index`.
    func chunk(index: Int, role: Bool, text: String, logprobs: [(token: Int, logprob: Float, top: [BatchDecoder.TokenLogprob])],
               finish: FinishReason?, job: CompletionJob, served: ServedModel) -> JSONValue {
        let logprobsValue = job.logprobs == nil || logprobs.isEmpty ? JSONValue.null : logprobsJSON(logprobs, served: served)
        let finishValue = finish.map { JSONValue.string($0.rawValue) } ?? .null
        let choice: JSONValue
        if kind == .chat {
            var delta: [(String, JSONValue)] = []
            if role { delta.append(("role", .string("assistant"))) }
            if role || !text.isEmpty { delta.append(("content", .string(text))) }
            choice = .object([("index", .int(index)), ("delta", .object(delta)), ("logprobs", logprobsValue), ("finish_reason", finishValue)])
        } else {
            choice = .object([("index", .int(index)), ("text", .string(text)), ("logprobs", logprobsValue), ("finish_reason", finishValue)])
        }
        return .object([("id", .string(id)), ("object", .string(kind == .chat ? "chat.completion.chunk" : "text_completion")),
                        ("created", .int(created)), ("model", .string(model)), ("system_fingerprint", .null), ("choices", .array([choice]))])
    }

    /// The last streamed chunk with `stream_options.include_usage`: no choices, the usage.
    func usageChunk(_ tokens: [Int], job: CompletionJob) -> JSONValue {
        .object([("id", .string(id)), ("object", .string(kind == .chat ? "chat.completion.chunk" : "text_completion")), ("created", .int(created)),
                 ("model", .string(model)), ("system_fingerprint", .null), ("choices", .array([])), ("usage", usage(tokens, job: job))])
    }

    private func logprobsJSON(_ entries: [(token: Int, logprob: Float, top: [BatchDecoder.TokenLogprob])], served: ServedModel) -> JSONValue {
        func text(_ token: Int) -> String { String(decoding: served.chat.tokenizer.tokenBytes(token) ?? [], as: UTF8.self) }
        func bytes(_ token: Int) -> JSONValue { .array((served.chat.tokenizer.tokenBytes(token) ?? []).map { .int(Int($0)) }) }
        if kind == .chat {
            return .object([("content", .array(entries.map { entry in
                .object([("token", .string(text(entry.token))), ("logprob", .double(Double(entry.logprob))), ("bytes", bytes(entry.token)),
                         ("top_logprobs", .array(entry.top.map {
                             .object([("token", .string(text($0.token))), ("logprob", .double(Double($0.logprob))), ("bytes", bytes($0.token))])
                         }))])
            })), ("refusal", .null)])
        }
        var offset = 0
        var offsets: [JSONValue] = []
        for entry in entries {
            offsets.append(.int(offset))
            offset += text(entry.token).count
        }
        return .object([("tokens", .array(entries.map { .string(text($0.token)) })),
                        ("token_logprobs", .array(entries.map { .double(Double($0.logprob)) })),
                        ("top_logprobs", .array(entries.map { entry in .object(entry.top.map { (text($0.token), .double(Double($0.logprob))) }) })),
                        ("text_offset", .array(offsets))])
    }
}
