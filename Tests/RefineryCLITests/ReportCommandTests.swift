import Foundation
import RefineryCore
import RefineryText
import Testing

/// `refinery data report` opened in a real headless Chromium (Debian's `chromium` package).
@Suite struct ReportCommandTests {
    static let artifacts = CommandLineTests.packageRoot.appendingPathComponent(".build/test-artifacts")

    static func chromium() throws -> String {
        for path in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] where FileManager.default.isExecutableFile(atPath: path) { return path }
        throw TextError("headless Chromium is needed for this test: apt-get install chromium (Debian's package; .ci/run installs it)")
    }

    /// Runs Chromium headless on `page` with `arguments`; returns (stdout, stderr). No host name
    /// resolves (nothing can be fetched from elsewhere); 127.0.0.1 is reachable.
    static func runChromium(_ arguments: [String], page: URL, profile: URL) throws -> (String, String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try chromium())
        process.arguments = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
                             "--user-data-dir=\(profile.path)", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1", "--enable-logging=stderr",
                             "--v=0"] + arguments + [page.absoluteString]
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let output = out.fileHandleForReading.readDataToEndOfFile(), errors = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (String(decoding: output, as: UTF8.self), String(decoding: errors, as: UTF8.self))
    }

    static func dataset() -> [String] {
        let topics = [("cooking", ["bake bread with flour yeast and water", "simmer the soup with onions and garlic", "roast vegetables in the oven"]),
                      ("training", ["lower the learning rate when the loss spikes", "use gradient accumulation for bigger batches", "evaluate the loss on a held-out split"]),
                      ("astronomy", ["the moon orbits the earth every month", "jupiter is the largest planet", "stars fuse hydrogen into helium"])]
        var rows: [String] = []
        for i in 0..<45 {
            let (topic, facts) = topics[i % 3]
            rows.append(JSONValue.object([("instruction", .string("Tell me about \(topic), question \(i) <with> \"markup\" & </script> in it?")),
                                          ("output", .string("Sample \(i): \(facts[i % 3]). Also \(facts[(i + 1) % 3]).")),
                                          ("lineage", .object([("id", .string("s\(i)"))]))]).compactText)
        }
        rows.append(rows[4].replacingOccurrences(of: "\"s4\"", with: "\"s4-copy\""))
        rows.append(rows[10].replacingOccurrences(of: "\"s10\"", with: "\"s10-copy\""))
        rows.append(JSONValue.object([("instruction", .string("Refuse")), ("output", .string("As an AI language model, I cannot help with that.")),
                                      ("lineage", .object([("id", .string("refusal"))]))]).compactText)
        return rows
    }

    @Test func reportOpensInHeadlessChromiumWithChartsMapAndNoErrors() async throws {
        try await offThePool {
            let dir = try TrainCommandTests.temporary()
            defer { try? FileManager.default.removeItem(at: dir) }
            let input = dir.appendingPathComponent("in.jsonl"), state = dir.appendingPathComponent("state.sqlite")
            try EmbedCommandTests.write(Self.dataset(), to: input)
            let filtered = dir.appendingPathComponent("filtered.jsonl"), deduped = dir.appendingPathComponent("deduped.jsonl")
            for arguments in [["data", "filter", "--input", input.path, "--output", filtered.path, "--state", state.path],
                              ["data", "dedup", "--input", filtered.path, "--output", deduped.path, "--state", state.path]] {
                let result = try CommandLineTests.run(arguments)
                #expect(result.status == 0, "\(result.stderr)")
            }
            let page = dir.appendingPathComponent("report.html")
            let result = try CommandLineTests.run(["data", "report", "--input", input.path, "--output", page.path, "--state", state.path,
                                                   "--model", EmbedCommandTests.minibert.path, "--topics", "3", "--tokenizer",
                                                   EmbedCommandTests.minibert.path])
            #expect(result.status == 0, "\(result.stderr)")
            #expect(result.stdout.contains("report of 48 samples (3 topics, 2 curation stages)"), "\(result.stdout)")
            let html = try String(contentsOf: page, encoding: .utf8)
            // Self-contained: nothing the page would fetch.
            for pattern in ["src=\"http", "href=\"http", "src='http", "@import", "url(http", "<link"] {
                #expect(!html.contains(pattern), "the page must not fetch anything (\(pattern))")
            }
            #expect(html.components(separatedBy: "<circle").count - 1 == 48, "one point per sample on the map")
            #expect(html.contains("class=\"chart histogram\"") && html.contains("class=\"chart bars\""))
            #expect(html.contains("Lengths (tokens)"))
            #expect(html.contains("exact copy") && html.contains("refusal"), "reasons per stage")
            #expect(html.contains("s4-copy"), "the near-duplicate group names the dropped copy")

            let profile = dir.appendingPathComponent("profile")
            let (dom, log) = try Self.runChromium(["--dump-dom", "--virtual-time-budget=5000"], page: page, profile: profile)
            #expect(dom.contains("data-ready=\"1\""), "the page's script ran to the end: \(log.suffix(2000))")
            #expect(!dom.contains("data-errors=\""), "no script errors: \(dom.components(separatedBy: "data-errors=").dropFirst().first?.prefix(300) ?? "")")
            #expect(!log.contains("Uncaught") && !log.contains(":ERROR:CONSOLE"), "no console errors: \(log.suffix(2000))")
            #expect(dom.contains("48 matching"), "the sample browser lists every sample")
            #expect(dom.contains("dropped by data filter #1 filter") && dom.contains("dropped by data dedup #1 dedup"),
                    "each sample shows the stage that dropped it")
            #expect(dom.contains("<option>exact copy</option>") && dom.contains("<option>refusal or AI boilerplate</option>"),
                    "the reason filter lists the reasons")
            #expect(dom.components(separatedBy: "<tr>").count - 1 >= 48, "rows rendered by the browser script")

            try FileManager.default.createDirectory(at: Self.artifacts, withIntermediateDirectories: true)
            let screenshot = Self.artifacts.appendingPathComponent("report-screenshot.png")
            try? FileManager.default.removeItem(at: screenshot)
            _ = try Self.runChromium(["--screenshot=\(screenshot.path)", "--window-size=1280,2600", "--hide-scrollbars"], page: page, profile: profile)
            let png = try Data(contentsOf: screenshot)
            #expect(png.count > 20_000 && png.starts(with: [0x89, 0x50, 0x4E, 0x47]), "a PNG screenshot of the page (\(png.count) bytes) at \(screenshot.path)")
        }
    }

    @Test func badInputIsRefusedWithTheReason() async throws {
        try await offThePool {
            let dir = try TrainCommandTests.temporary()
            defer { try? FileManager.default.removeItem(at: dir) }
            let input = dir.appendingPathComponent("in.jsonl"), page = dir.appendingPathComponent("report.html")
            try EmbedCommandTests.write(["{\"instruction\": \"a\", \"output\": \"b\"}", "{not json"], to: input)
            let result = try CommandLineTests.run(["data", "report", "--input", input.path, "--output", page.path])
            #expect(result.status != 0 && result.stderr.contains("in.jsonl:2"), "\(result.stderr)")
            #expect(!FileManager.default.fileExists(atPath: page.path))
            try Data().write(to: input)
            let empty = try CommandLineTests.run(["data", "report", "--input", input.path, "--output", page.path])
            #expect(empty.status == 0 && empty.stderr.contains("holds no samples"), "\(empty.stderr)")
            #expect(try String(contentsOf: page, encoding: .utf8).contains("0</b> samples"))
        }
    }
}
