import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import RefineryCore
import RefineryModel
import RefineryText
import Testing

/// `refinery serve` on the fixture model, through real HTTP: the models list, a greedy chat answer
/// that streams as the same text and equals `refinery generate`, usage, `n`, stop strings,
/// `json_schema` at temperature 1 always valid, the errors (400, 404, 413, 429) in OpenAI's
/// shape, a client that goes away freeing its place, and the token rule beyond loopback.
@Suite struct ServeCommandTests {
    /// A running `refinery serve` and its base address.
    final class Server {
        let process: ClusterTests.Background
        let base: String

        static func start(model: String, name: String) throws -> Server { try Server(["--name", name], model: model) }

        init(_ extra: [String] = [], model: String = TrainCommandTests.llama, environment: [String: String] = [:]) throws {
            let dir = try TrainCommandTests.temporary()
            process = try ClusterTests.Background(["serve", "--model", model, "--listen", "127.0.0.1:0"] + extra,
                                                  log: dir.appendingPathComponent("serve.log"), environment: environment)
            guard let found = process.address(after: "on http://", before: "/v1", seconds: 60) else { throw TextError("refinery serve did not start: \(process.output)") }
            base = found
        }

        deinit { process.kill9() }
    }

    struct Reply {
        var status: Int
        var headers: [String: String]
        var body: String
        var json: JSONValue? { try? JSONValue.parse(body) }
    }

    /// A blocking HTTP request (the test runs off the cooperative pool).
    static func send(_ url: String, body: String? = nil, bearer: String? = nil) -> Reply {
        var request = URLRequest(url: URL(string: url)!)
        request.timeoutInterval = 120
        if let body {
            request.httpMethod = "POST"
            request.httpBody = Data(body.utf8)
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        }
        if let bearer { request.setValue("Bearer \(bearer)", forHTTPHeaderField: "Authorization") }
        let done = DispatchSemaphore(value: 0)
        let box = ReplyBox()
        URLSession.shared.dataTask(with: request) { data, response, _ in
            let http = response as? HTTPURLResponse
            var headers: [String: String] = [:]
            for (key, value) in http?.allHeaderFields ?? [:] { headers[String(describing: key).lowercased()] = String(describing: value) }
            box.reply = Reply(status: http?.statusCode ?? 0, headers: headers, body: String(decoding: data ?? Data(), as: UTF8.self))
            done.signal()
        }.resume()
        done.wait()
        return box.reply ?? Reply(status: 0, headers: [:], body: "")
    }

    final class ReplyBox: @unchecked Sendable { var reply: Reply? }

    static func chat(_ content: String, _ fields: String = "") -> String {
        #"{"model":"llama-gqa","messages":[{"role":"user","content":"# + JSONValue.string(content).compactText + "}]" + fields + "}"
    }

    /// The `data:` payloads of a server-sent event stream.
    static func events(_ body: String) -> [String] {
        body.components(separatedBy: "\n\n").compactMap { block in
            block.hasPrefix("data: ") ? String(block.dropFirst(6)) : nil
        }
    }

    @Test func aGreedyAnswerStreamsAsItselfAndEqualsGenerate() async throws {
        try await offThePool {
            let server = try Server()
            let models = Self.send(server.base + "/v1/models")
            #expect(models.json?["data"]?.arrayValue?.first?["id"]?.stringValue == "llama-gqa", "\(models.body)")

            let whole = Self.send(server.base + "/v1/chat/completions", body: Self.chat("Write a poem about the sea.", #","max_tokens":12,"temperature":0"#))
            let answer = try #require(whole.json?["choices"]?.arrayValue?.first?["message"]?["content"]?.stringValue, "\(whole.body)")
            let usage = try #require(whole.json?["usage"])
            #expect(usage["completion_tokens"]?.intValue == 12 && whole.json?["choices"]?.arrayValue?.first?["finish_reason"]?.stringValue == "length")
            #expect(usage["total_tokens"]?.intValue == (usage["prompt_tokens"]?.intValue ?? 0) + 12)

            let streamed = Self.send(server.base + "/v1/chat/completions",
                                     body: Self.chat("Write a poem about the sea.", #","max_tokens":12,"temperature":0,"stream":true,"stream_options":{"include_usage":true}"#))
            #expect(streamed.headers["content-type"]?.hasPrefix("text/event-stream") == true)
            let events = Self.events(streamed.body)
            #expect(events.last == "[DONE]")
            let chunks = events.dropLast().compactMap { try? JSONValue.parse($0) }
            let text = chunks.compactMap { $0["choices"]?.arrayValue?.first?["delta"]?["content"]?.stringValue }.joined()
            #expect(text == answer, "streamed \(text.debugDescription) vs whole \(answer.debugDescription)")
            #expect(chunks.first?["choices"]?.arrayValue?.first?["delta"]?["role"]?.stringValue == "assistant")
            #expect(chunks.contains { $0["choices"]?.arrayValue?.first?["finish_reason"]?.stringValue == "length" })
            #expect(chunks.last?["usage"] == usage, "the usage chunk equals the whole answer's usage")

            // The same rendered conversation through `refinery generate`.
            let dir = try TrainCommandTests.temporary()
            let input = dir.appendingPathComponent("in.jsonl")
            try (#"{"messages":[{"role":"user","content":"Write a poem about the sea."}]}"# + "\n").write(to: input, atomically: true, encoding: .utf8)
            let generated = try CommandLineTests.run(["generate", "--model", TrainCommandTests.llama, "--input", input.path, "--max-new-tokens", "12"])
            #expect(generated.status == 0, "\(generated.stderr)")
            let completion = try JSONValue.parse(generated.stdout.trimmingCharacters(in: .whitespacesAndNewlines))["completion"]?.stringValue
            #expect(completion == answer, "generate \(completion.debugDescription) vs serve \(answer.debugDescription)")

            // Completions, n, seeds and a stop string.
            let text2 = Self.send(server.base + "/v1/completions", body: #"{"model":"llama-gqa","prompt":"The sea","max_tokens":6,"temperature":1,"seed":5,"n":3}"#)
            let choices = text2.json?["choices"]?.arrayValue ?? []
            #expect(choices.count == 3 && text2.json?["usage"]?["completion_tokens"]?.intValue == 18, "\(text2.body)")
            let again = Self.send(server.base + "/v1/completions", body: #"{"model":"llama-gqa","prompt":"The sea","max_tokens":6,"temperature":1,"seed":5,"n":3}"#)
            #expect(again.json?["choices"] == text2.json?["choices"], "a seed repeats its answers")
            let stopAt = String(answer.unicodeScalars.prefix(8).suffix(2))
            let stopped = Self.send(server.base + "/v1/chat/completions",
                                    body: Self.chat("Write a poem about the sea.", #","max_tokens":12,"temperature":0,"stop":["# + JSONValue.string(stopAt).compactText + "]"))
            let cut = stopped.json?["choices"]?.arrayValue?.first?["message"]?["content"]?.stringValue ?? "?"
            #expect(cut.count < answer.count && answer.hasPrefix(cut) && !cut.contains(stopAt)
                    && stopped.json?["choices"]?.arrayValue?.first?["finish_reason"]?.stringValue == "stop", "\(cut.debugDescription) (stop \(stopAt.debugDescription))")
            let logprobs = Self.send(server.base + "/v1/chat/completions",
                                     body: Self.chat("Hi", #","max_tokens":3,"temperature":0,"logprobs":true,"top_logprobs":2"#))
            let entries = logprobs.json?["choices"]?.arrayValue?.first?["logprobs"]?["content"]?.arrayValue ?? []
            #expect(entries.count == 3 && entries.allSatisfy { ($0["logprob"]?.doubleValue ?? 1) <= 0 && $0["top_logprobs"]?.arrayValue?.count == 2 },
                    "\(logprobs.body)")
            // Greedy: the chosen token is the most likely one.
            #expect(entries.allSatisfy { $0["logprob"] == $0["top_logprobs"]?.arrayValue?.first?["logprob"] })
        }
    }

    @Test func jsonSchemaAtTemperatureOneAlwaysGivesValidDocuments() async throws {
        try await offThePool {
            let server = try Server()
            let schema = #"{"type":"object","additionalProperties":false,"required":["title","tags","score","ok"],"properties":{"title":{"type":"string","pattern":"\\S"},"tags":{"type":"array","items":{"type":"string"},"minItems":1,"maxItems":3},"score":{"type":"integer"},"ok":{"type":["boolean","null"]}}}"#
            var valid = 0
            for round in 0..<20 {
                let reply = Self.send(server.base + "/v1/chat/completions",
                                      body: Self.chat("Describe round \(round)", #","max_tokens":60,"temperature":1.0,"n":5,"seed":"# + "\(round)"
                                                      + #","response_format":{"type":"json_schema","json_schema":{"name":"card","strict":true,"schema":"# + schema + "}}"))
                for choice in reply.json?["choices"]?.arrayValue ?? [] {
                    let content = choice["message"]?["content"]?.stringValue ?? ""
                    guard let value = try? JSONValue.parse(content) else { Issue.record("not JSON: \(content.debugDescription)"); continue }
                    let keys = value.objectValue?.map(\.0) ?? []
                    let tags = value["tags"]?.arrayValue ?? []
                    let ok = keys == ["title", "tags", "score", "ok"]
                        && !(value["title"]?.stringValue ?? "").trimmingCharacters(in: .whitespacesAndNewlines).isEmpty
                        && (1...3).contains(tags.count) && tags.allSatisfy { $0.stringValue != nil }
                        && { if case .int = value["score"] { return true } else { return false } }()
                        && (value["ok"]?.boolValue != nil || value["ok"] == .null)
                    #expect(ok, "\(content)")
                    if ok { valid += 1 }
                }
            }
            #expect(valid == 100, "\(valid) of 100 valid")
            // json_object: any object; a schema the decoder cannot enforce is refused by name.
            let object = Self.send(server.base + "/v1/chat/completions",
                                   body: Self.chat("Hi", #","max_tokens":40,"temperature":1.0,"seed":3,"response_format":{"type":"json_object"}"#))
            let content = object.json?["choices"]?.arrayValue?.first?["message"]?["content"]?.stringValue ?? ""
            #expect((try? JSONValue.parse(content))?.objectValue != nil, "\(content)")
            let refused = Self.send(server.base + "/v1/chat/completions",
                                    body: Self.chat("Hi", #","response_format":{"type":"json_schema","json_schema":{"name":"x","schema":{"type":"string","pattern":"^[a-z]+$"}}}"#))
            #expect(refused.status == 400 && refused.json?["error"]?["param"]?.stringValue == "response_format.json_schema.schema"
                    && (refused.json?["error"]?["message"]?.stringValue ?? "").contains("pattern"), "\(refused.body)")
            let tooShort = Self.send(server.base + "/v1/chat/completions",
                                     body: Self.chat("Hi", #","max_tokens":3,"response_format":{"type":"json_schema","json_schema":{"name":"x","schema":"# + schema + "}}"))
            #expect(tooShort.status == 400 && tooShort.json?["error"]?["param"]?.stringValue == "max_tokens", "\(tooShort.body)")
        }
    }

    @Test func errorsComeInOpenAIsShapeAndABusyServerSays429() async throws {
        try await offThePool {
            let server = try Server(["--max-batch", "1", "--max-queue", "0", "--max-request-bytes", "2048"])
            let unknown = Self.send(server.base + "/v1/chat/completions", body: #"{"model":"gpt-4o","messages":[{"role":"user","content":"Hi"}]}"#)
            #expect(unknown.status == 404 && unknown.json?["error"]?["code"]?.stringValue == "model_not_found", "\(unknown.body)")
            let hot = Self.send(server.base + "/v1/chat/completions", body: Self.chat("Hi", #","temperature":7"#))
            #expect(hot.status == 400 && hot.json?["error"]?["param"]?.stringValue == "temperature", "\(hot.body)")
            let broken = Self.send(server.base + "/v1/completions", body: "{not json")
            #expect(broken.status == 400 && broken.json?["error"]?["type"]?.stringValue == "invalid_request_error", "\(broken.body)")
            let big = Self.send(server.base + "/v1/completions", body: #"{"model":"llama-gqa","prompt":""# + String(repeating: "a", count: 4096) + #""}"#)
            #expect(big.status == 413, "\(big.status) \(big.body)")

            // One long request (250 tokens, no early end) holds the only place; a second request is
            // told to come back. On a loaded machine the second can arrive after the first has
            // finished (then it is rightly served), so up to three tries: a server that ignored
            // --max-batch would serve all three.
            let base = server.base
            var answers: [String] = []
            var busy: Reply?
            for attempt in 1...3 {
                let holder = Thread {
                    _ = Self.send(base + "/v1/completions",
                                  body: #"{"model":"llama-gqa","prompt":"Once","max_tokens":250,"ignore_eos":true,"temperature":1,"seed":\#(attempt)}"#)
                }
                holder.start()
                busy = nil
                let deadline = Date().addingTimeInterval(30)
                while Date() < deadline {
                    let health = Self.send(server.base + "/health")
                    if health.json?["decoding"]?.intValue == 1 {
                        busy = Self.send(server.base + "/v1/completions", body: #"{"model":"llama-gqa","prompt":"Twice","max_tokens":2}"#)
                        break
                    }
                    Thread.sleep(forTimeInterval: 0.02)
                }
                answers.append(busy.map { "\($0.status) \($0.body.prefix(200))" } ?? "the long request never started")
                if busy?.status == 429 { break }
                // Let the holder finish before the next try.
                let idle = Date().addingTimeInterval(60)
                while Date() < idle && Self.send(server.base + "/health").json?["decoding"]?.intValue != 0 { Thread.sleep(forTimeInterval: 0.05) }
            }
            #expect(busy?.status == 429 && busy?.headers["retry-after"] != nil && busy?.json?["error"]?["code"]?.stringValue == "server_busy",
                    "\(answers)")
        }
    }

    @Test func aClientThatGoesAwayFreesItsPlace() async throws {
        try await offThePool {
            let server = try Server(["--max-batch", "1", "--max-queue", "0"])
            // Read the first chunk of a long stream, then hang up.
            let url = try #require(URL(string: server.base + "/v1/completions"))
            var request = URLRequest(url: url)
            request.httpMethod = "POST"
            request.httpBody = Data(#"{"model":"llama-gqa","prompt":"Once","max_tokens":250,"temperature":1,"seed":2,"stream":true}"#.utf8)
            let gotChunk = DispatchSemaphore(value: 0)
            let delegate = FirstChunkDelegate { gotChunk.signal() }
            let session = URLSession(configuration: .ephemeral, delegate: delegate, delegateQueue: nil)
            let task = session.dataTask(with: request)
            task.resume()
            #expect(gotChunk.wait(timeout: .now() + 60) == .success, "the stream started")
            task.cancel()
            session.invalidateAndCancel()
            // The sequence leaves the batch: the server takes a new request instead of answering 429.
            var freed = false
            let deadline = Date().addingTimeInterval(20)
            while !freed && Date() < deadline {
                freed = Self.send(server.base + "/health").json?["decoding"]?.intValue == 0
                if !freed { Thread.sleep(forTimeInterval: 0.05) }
            }
            #expect(freed, "the abandoned sequence was cancelled")
            let next = Self.send(server.base + "/v1/completions", body: #"{"model":"llama-gqa","prompt":"Next","max_tokens":2}"#)
            #expect(next.status == 200, "\(next.status) \(next.body)")
        }
    }

    /// Refinery's own generation stage against a local `refinery serve`: with `json_schema`, every
    /// chunk's first reply is a valid set of pairs even from random weights (the fixture model,
    /// its context lengthened — RoPE has no learned positions — to hold a chunk's prompt).
    @Test func theGenerationStageGetsValidPairsFromALocalServer() async throws {
        try await offThePool {
            let dir = try TrainCommandTests.temporary()
            let model = dir.appendingPathComponent("fixture-long")
            try FileManager.default.copyItem(at: URL(fileURLWithPath: TrainCommandTests.llama), to: model)
            let configURL = model.appendingPathComponent("config.json")
            guard case var .object(fields) = try JSONValue.parse(String(contentsOf: configURL, encoding: .utf8)) else { throw TextError("config.json") }
            fields = fields.map { $0.0 == "max_position_embeddings" ? ($0.0, .int(4096)) : $0 }
            try JSONValue.object(fields).compactText.write(to: configURL, atomically: true, encoding: .utf8)
            let dirServer = try Server.start(model: model.path, name: "fixture")
            let articles = dir.appendingPathComponent("articles.json")
            try ClusterTests.writeArticles(articles, count: 3)
            let config = dir.appendingPathComponent("gen.yaml")
            try """
            data:
              articles: \(articles.path)
              state: \(dir.appendingPathComponent("gen.db").path)
              out: \(dir.appendingPathComponent("pairs.jsonl").path)
            generate:
              base_url: \(dirServer.base)/v1
              model: fixture
              response_format: json_schema
              pairs_per_chunk: 2
              max_tokens: 200
              temperature: 1.0
              max_invalid: 1
            """.write(to: config, atomically: true, encoding: .utf8)
            let run = try CommandLineTests.run(["data", "generate", "--config", config.path])
            #expect(run.status == 0, "\(run.stderr.suffix(1500))")
            let status = try JSONValue.parse(try CommandLineTests.run(["status", "--state", dir.appendingPathComponent("gen.db").path, "--json"]).stdout)
            let done = status["chunks"]?["done"]?.intValue ?? 0
            #expect(done >= 3 && status["chunks"]?["failed"]?.intValue == 0 && status["requests"]?.intValue == done,
                    "every chunk's first reply was valid: \(status.compactText)")
            let lines = try String(contentsOf: dir.appendingPathComponent("pairs.jsonl"), encoding: .utf8).split(separator: "\n")
                + (try String(contentsOf: dir.appendingPathComponent("pairs.test.jsonl"), encoding: .utf8)).split(separator: "\n")
            #expect(lines.count == 2 * done, "two pairs per chunk: \(lines.count) lines for \(done) chunks")
        }
    }

    /// A sentence-transformers folder is served at /v1/embeddings: the vectors are the embedder's.
    @Test func anEmbeddingModelAnswersEmbeddings() async throws {
        try await offThePool {
            let server = try Server([], model: EmbedCommandTests.minibert.path)
            let reply = Self.send(server.base + "/v1/embeddings", body: #"{"model":"minibert","input":["a cat sat on the mat","refinery"]}"#)
            let data = reply.json?["data"]?.arrayValue ?? []
            #expect(data.count == 2 && reply.json?["usage"]?["prompt_tokens"]?.intValue ?? 0 > 0, "\(reply.body.prefix(300))")
            let embedder = try SentenceEmbedder(directory: EmbedCommandTests.minibert, dtype: .auto)
            let want = try embedder.embed(["a cat sat on the mat", "refinery"])
            for (row, expected) in zip(data, want) {
                let got = row["embedding"]?.arrayValue?.compactMap(\.doubleValue) ?? []
                #expect(got.count == expected.count && zip(got, expected).allSatisfy { abs(Float($0) - $1) <= 1e-6 * max(1, abs($1)) })
            }
            #expect(Self.send(server.base + "/v1/embeddings", body: #"{"model":"minibert","input":[]}"#).status == 400)
            #expect(Self.send(server.base + "/v1/chat/completions", body: Self.chat("Hi")).status == 404, "no chat on an embedding model")
        }
    }

    /// Two adapters served unmerged on one base: each request's `model` picks one, and its greedy
    /// answer equals `refinery generate --adapter` (merged); the base answers as itself, also when
    /// all three decode in the same batch.
    @Test func loraAdaptersAreChosenByModelName() async throws {
        try await offThePool {
            let dir = try TrainCommandTests.temporary()
            var folders: [String] = []
            for (index, lr) in ["0.05", "0.08"].enumerated() {
                let folder = dir.appendingPathComponent("adapter\(index)").path
                let train = try CommandLineTests.run(["train", "--model", TrainCommandTests.llama, "--data", TrainCommandTests.trainData, "--output", folder,
                                                      "--steps", "3", "--lora-r", "4", "--lr", lr, "--seed", "\(index + 1)"])
                #expect(train.status == 0, "\(train.stderr)")
                folders.append(folder)
            }
            let server = try Server(["--lora", "first=\(folders[0])", "--lora", "second=\(folders[1])"])
            let names = Set((Self.send(server.base + "/v1/models").json?["data"]?.arrayValue ?? []).compactMap { $0["id"]?.stringValue })
            #expect(names == ["llama-gqa", "first", "second"])
            // All three at once, so they share decoding steps.
            let models = ["first", "llama-gqa", "second"]
            let replies = ReplyList()
            let group = DispatchGroup()
            for model in models {
                group.enter()
                let base = server.base
                Thread.detachNewThread {
                    let body = #"{"model":""# + model + #"","messages":[{"role":"user","content":"Write a poem about the sea."}],"max_tokens":10,"temperature":0}"#
                    replies.set(model, Self.send(base + "/v1/chat/completions", body: body))
                    group.leave()
                }
            }
            group.wait()
            let input = dir.appendingPathComponent("in.jsonl")
            try (#"{"messages":[{"role":"user","content":"Write a poem about the sea."}]}"# + "\n").write(to: input, atomically: true, encoding: .utf8)
            var answers: [String: String] = [:]
            for (model, adapter) in zip(models, [folders[0], nil, folders[1]]) {
                let answer = replies.get(model)?.json?["choices"]?.arrayValue?.first?["message"]?["content"]?.stringValue
                answers[model] = answer
                let generated = try CommandLineTests.run(["generate", "--model", TrainCommandTests.llama, "--input", input.path, "--max-new-tokens", "10"]
                                                         + (adapter.map { ["--adapter", $0] } ?? []))
                let completion = try JSONValue.parse(generated.stdout.trimmingCharacters(in: .whitespacesAndNewlines))["completion"]?.stringValue
                #expect(answer != nil && answer == completion, "\(model): serve \(answer.debugDescription) vs generate \(completion.debugDescription)")
            }
            #expect(Set(answers.values).count == 3, "three different models: \(answers)")
            let bad = try CommandLineTests.run(["serve", "--model", TrainCommandTests.llama, "--lora", "nodir", "--listen", "127.0.0.1:0"])
            #expect(bad.status != 0 && bad.stderr.contains("NAME=DIR"), "\(bad.stderr)")
        }
    }

    @Test func beyondLoopbackATokenIsRequired() async throws {
        try await offThePool {
            let open = try CommandLineTests.run(["serve", "--model", TrainCommandTests.llama, "--listen", "0.0.0.0:0"])
            #expect(open.status != 0 && open.stderr.contains("REFINERY_SERVE_TOKEN"), "\(open.stderr)")
            let server = try Server([], environment: ["REFINERY_SERVE_TOKEN": "s3cret"])
            #expect(Self.send(server.base + "/v1/models").status == 401)
            #expect(Self.send(server.base + "/v1/models", bearer: "wrong").status == 401)
            #expect(Self.send(server.base + "/v1/models", bearer: "s3cret").status == 200)
        }
    }
}

/// Signals once the first bytes of a response body arrive.
final class FirstChunkDelegate: NSObject, URLSessionDataDelegate, @unchecked Sendable {
    private let onFirst: () -> Void
    private var seen = false

    init(onFirst: @escaping () -> Void) { self.onFirst = onFirst }

    func urlSession(_ session: URLSession, dataTask: URLSessionDataTask, didReceive data: Data) {
        guard !seen else { return }
        seen = true
        onFirst()
    }
}

/// Replies by model name, filled from several threads.
final class ReplyList: @unchecked Sendable {
    private let lock = NSLock()
    private var replies: [String: ServeCommandTests.Reply] = [:]
    func set(_ model: String, _ reply: ServeCommandTests.Reply) { lock.lock(); replies[model] = reply; lock.unlock() }
    func get(_ model: String) -> ServeCommandTests.Reply? { lock.lock(); defer { lock.unlock() }; return replies[model] }
}
