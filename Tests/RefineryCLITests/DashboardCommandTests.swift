import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import RefineryCore
import GRDB
import RefineryStore
import Testing

/// `refinery dashboard` on a finished run's state file: `/metrics` in the Prometheus text format
/// whose figures equal `status --json`'s, `/api/status`, and the token rule beyond loopback.
@Suite struct DashboardCommandTests {
    /// A `refinery dashboard` subprocess and its base URL.
    final class Dashboard {
        let process = Process()
        let base: String

        init(_ arguments: [String], environment: [String: String] = [:]) throws {
            process.executableURL = try CommandLineTests.executable()
            process.arguments = ["dashboard"] + arguments
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
            let out = Pipe()
            process.standardOutput = out
            process.standardError = FileHandle.nullDevice
            try process.run()
            var text = ""
            let deadline = Date().addingTimeInterval(20)
            while !text.contains(" (/metrics") && Date() < deadline {
                let data = out.fileHandleForReading.availableData
                if data.isEmpty { break }
                text += String(decoding: data, as: UTF8.self)
            }
            guard let start = text.range(of: "http://"), let end = text.range(of: " (/metrics") else {
                process.terminate()
                throw CoreError("dashboard did not report its address: \(text)")
            }
            base = String(text[start.lowerBound..<end.lowerBound])
        }

        deinit { if process.isRunning { process.terminate() } }
    }

    static func get(_ url: String, bearer: String? = nil) async throws -> (status: Int, body: String) {
        var request = URLRequest(url: try #require(URL(string: url)))
        if let bearer { request.setValue("Bearer \(bearer)", forHTTPHeaderField: "Authorization") }
        let (data, response) = try await URLSession.shared.data(for: request)
        return ((response as? HTTPURLResponse)?.statusCode ?? 0, String(decoding: data, as: UTF8.self))
    }

    /// `name{labels}` → value of every sample line.
    static func samples(_ text: String) -> [String: Double] {
        var result: [String: Double] = [:]
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else { continue }
            result[String(line[..<space])] = value
        }
        return result
    }

    @Test func metricsAgreeWithStatusAndTheTokenIsEnforced() async throws {
        let (dir, _) = try ClusterTests.uninterruptedRun(articles: 20, train: true, steps: 4)
        let state = dir.appendingPathComponent("ref.db").path
        let status = try CommandLineTests.run(["status", "--state", state, "--json"])
        #expect(status.status == 0, "\(status.stderr)")
        let json = try JSONValue.parse(status.stdout.trimmingCharacters(in: .whitespacesAndNewlines))

        let dashboard = try Dashboard(["--state", state, "--listen", "127.0.0.1:0"])
        let metrics = try await Self.get(dashboard.base + "/metrics")
        #expect(metrics.status == 200)
        #expect(metrics.body.contains("# TYPE refinery_llm_requests_total counter"), "\(metrics.body)")
        let samples = Self.samples(metrics.body)
        #expect(samples["refinery_chunks{state=\"done\"}"] == json["chunks"]?["done"]?.doubleValue)
        #expect(samples["refinery_chunks{state=\"failed\"}"] == json["chunks"]?["failed"]?.doubleValue)
        #expect(samples["refinery_chunks{state=\"pending\"}"] == json["chunks"]?["pending"]?.doubleValue)
        #expect(samples["refinery_llm_requests_total"] == json["requests"]?.doubleValue)
        #expect((samples["refinery_llm_requests_total"] ?? 0) > 0)
        let outcomes = json["requests_by_outcome"]?.objectValue ?? []
        #expect(!outcomes.isEmpty && outcomes.map { $0.1.doubleValue ?? 0 }.reduce(0, +) == json["requests"]?.doubleValue, "every request has an outcome")
        for (outcome, count) in outcomes {
            #expect(samples["refinery_llm_requests_by_outcome_total{outcome=\"\(outcome)\"}"] == count.doubleValue, "\(outcome)")
        }
        #expect(samples["refinery_llm_tokens_total{kind=\"prompt\"}"] == json["prompt_tokens"]?.doubleValue)
        #expect(samples["refinery_llm_tokens_total{kind=\"completion\"}"] == json["completion_tokens"]?.doubleValue)
        #expect(samples["refinery_train_step"] == json["training"]?["last"]?["step"]?.doubleValue)
        #expect(samples["refinery_train_step"] == 4)
        #expect(samples["refinery_train_loss"] == json["training"]?["last"]?["loss"]?.doubleValue)
        #expect(samples["refinery_eval_loss"] == json["training"]?["last_eval"]?["eval_loss"]?.doubleValue)
        let workers = json["workers"]?.arrayValue ?? []
        #expect(samples["refinery_workers{state=\"gone\"}"] == Double(workers.filter { $0["state"]?.stringValue == "gone" }.count))
        let api = try await Self.get(dashboard.base + "/api/status")
        let apiJSON = try JSONValue.parse(api.body)
        #expect(api.status == 200 && apiJSON["requests"] == json["requests"])
        #expect(!metrics.body.lowercased().contains("sk-") && !api.body.lowercased().contains("sk-"), "no API key is served")

        // The page in a real headless Chromium: its script runs without errors and draws one point per
        // finished step and per eval, and a row per worker (gone after the run: "left", not "lost").
        let rows = try JSONValue.parse(try await Self.get(dashboard.base + "/api/train").body).arrayValue ?? []
        let trainRows = rows.filter { $0["loss"] != nil }.count, evalRows = rows.filter { $0["eval_loss"] != nil }.count
        #expect(trainRows == 4 && evalRows >= 1)
        let page = try #require(URL(string: dashboard.base + "/"))
        let html = try await Self.get(dashboard.base + "/").body
        for pattern in ["src=\"http", "href=\"http", "@import", "url(http", "<link"] { #expect(!html.contains(pattern), "the page fetches nothing (\(pattern))") }
        let profile = dir.appendingPathComponent("chromium-profile")
        let (dom, log) = try ReportCommandTests.runChromium(["--dump-dom", "--virtual-time-budget=5000"], page: page, profile: profile)
        #expect(dom.contains("data-ready=\"1\""), "the page's script ran: \(log.suffix(1500))")
        #expect(!dom.contains("data-errors="), "no fetch or script error")
        #expect(!log.contains("Uncaught") && !log.contains(":ERROR:CONSOLE"), "no console errors: \(log.suffix(1500))")
        #expect(dom.components(separatedBy: "class=\"loss\"").count - 1 == trainRows, "one loss point per finished step")
        #expect(dom.components(separatedBy: "class=\"eval\"").count - 1 == evalRows, "one point per eval")
        #expect(dom.components(separatedBy: ">left<").count - 1 == workers.count, "\(workers.count) workers shown as left")
        try FileManager.default.createDirectory(at: ReportCommandTests.artifacts, withIntermediateDirectories: true)
        let screenshot = ReportCommandTests.artifacts.appendingPathComponent("dashboard-screenshot.png")
        try? FileManager.default.removeItem(at: screenshot)
        _ = try ReportCommandTests.runChromium(["--screenshot=\(screenshot.path)", "--window-size=1100,1300", "--hide-scrollbars",
                                                "--virtual-time-budget=5000"], page: page, profile: profile)
        let png = try Data(contentsOf: screenshot)
        #expect(png.starts(with: [0x89, 0x50, 0x4E, 0x47]) && png.count > 10_000, "a PNG screenshot (\(png.count) bytes) at \(screenshot.path)")

        // With a token, requests without it are refused; with it (header or query) answered.
        let guarded = try Dashboard(["--state", state, "--listen", "127.0.0.1:0"], environment: ["REFINERY_DASHBOARD_TOKEN": "t0k3n"])
        let none = try await Self.get(guarded.base + "/metrics"), wrong = try await Self.get(guarded.base + "/metrics", bearer: "wrong")
        let header = try await Self.get(guarded.base + "/metrics", bearer: "t0k3n"), query = try await Self.get(guarded.base + "/api/status?token=t0k3n")
        #expect(none.status == 401 && wrong.status == 401)
        #expect(header.status == 200 && query.status == 200)
        let (guardedDOM, _) = try ReportCommandTests.runChromium(["--dump-dom", "--virtual-time-budget=5000"],
                                                                 page: try #require(URL(string: guarded.base + "/?token=t0k3n")), profile: profile)
        #expect(guardedDOM.contains("data-ready=\"1\""), "the page passes its token on to its requests")
        // Beyond loopback without a token: refused before binding.
        let open = try CommandLineTests.run(["dashboard", "--state", state, "--listen", "0.0.0.0:0"])
        #expect(open.status != 0 && open.stderr.contains("REFINERY_DASHBOARD_TOKEN"), "\(open.stderr)")
        let missing = try CommandLineTests.run(["dashboard", "--state", dir.appendingPathComponent("nope.db").path, "--listen", "127.0.0.1:0"])
        #expect(missing.status != 0 && missing.stderr.contains("no state file"), "\(missing.stderr)")
    }

    /// A run that has created its state file but not yet set it up (here: an empty file, as SQLite
    /// leaves it between creating and migrating) is answered 503 + Retry-After, like a missing one —
    /// not 500; the page itself is served, and the training log is empty. A file that is not a Refinery state is refused at start.
    @Test func aStateStillBeingSetUpIsAnsweredLaterAndAForeignFileIsRefused() async throws {
        let dir = try TrainCommandTests.temporary()
        let empty = dir.appendingPathComponent("starting.db")
        #expect(FileManager.default.createFile(atPath: empty.path, contents: Data()))
        let dashboard = try Dashboard(["--state", empty.path, "--listen", "127.0.0.1:0"])
        for path in ["/api/status", "/metrics", "/api/train"] {
            let answer = try await Self.get(dashboard.base + path)
            #expect(answer.status == 503 && answer.body.contains("setting up"), "\(path): \(answer.status) \(answer.body)")
        }
        #expect(try await Self.get(dashboard.base + "/").status == 200)
        // The file replaced by a run's state under the same name (a run started over there): the
        // dashboard reads the new file, not the one it opened first — and only once every
        // migration is recorded (tables already there are not enough: a read racing the
        // migrations would find some missing).
        let replacement = dir.appendingPathComponent("next.db")
        try RunStore(path: replacement.path).setMeta("stage", "curate")
        let last = try await DatabaseQueue(path: replacement.path).write { db -> String in
            let name = try String.fetchOne(db, sql: "SELECT identifier FROM grdb_migrations ORDER BY rowid DESC LIMIT 1") ?? ""
            try db.execute(sql: "DELETE FROM grdb_migrations WHERE identifier = ?", arguments: [name])
            return name
        }
        let unfinished = dir.appendingPathComponent("unfinished.db")
        try FileManager.default.copyItem(at: replacement, to: unfinished)
        try await DatabaseQueue(path: replacement.path).write { db in
            try db.execute(sql: "INSERT INTO grdb_migrations (identifier) VALUES (?)", arguments: [last])
        }
        #expect(rename(unfinished.path, empty.path) == 0, "replaced")
        let early = try await Self.get(dashboard.base + "/api/status")
        #expect(early.status == 503, "migration \(last) not recorded yet: \(early.status) \(early.body)")
        #expect(rename(replacement.path, empty.path) == 0, "replaced")
        let status = try await Self.get(dashboard.base + "/api/status")
        #expect(status.status == 200 && status.body.contains("\"stage\":\"curate\""), "\(status.status) \(status.body)")
        let garbage = dir.appendingPathComponent("notes.db")
        try Data("not a database at all, just some text that is long enough".utf8).write(to: garbage)
        let refused = try CommandLineTests.run(["dashboard", "--state", garbage.path, "--listen", "127.0.0.1:0"])
        #expect(refused.status != 0 && refused.stderr.contains("not a readable SQLite database"), "\(refused.stderr)")
    }

    /// The coordinator's own dashboard during a run: both workers show as connected, and one killed
    /// with SIGKILL shows as lost within its liveness window (3 heartbeats of 1 s) plus the page's
    /// 2 s poll and the Chromium runs that look (~4 s in all here when idle; one Chromium run takes up to
    /// ~10 s while the whole suite runs in parallel, so the bound is 30 s).
    @Test func aKilledWorkerShowsAsLostOnTheLivePage() async throws {
        try await offThePool {
            let dir = try TrainCommandTests.temporary()
            let articles = dir.appendingPathComponent("articles.json")
            // 60 articles at 2 s a call on 2 × 1 slots: minutes of work, so the run is still going
            // however slowly Chromium starts on a loaded machine.
            try ClusterTests.writeArticles(articles, count: 60)
            let mock = try ClusterTests.Mock(latencyMs: 2000)
            let config = try ClusterTests.config(dir: dir, name: "live", articles: articles, mock: mock, train: false)
            let endpoint = FreePort.endpoint()
            let coordinator = try ClusterTests.Background(["coordinator", "--config", config.path, "--listen", endpoint, "--dashboard", "127.0.0.1:0"],
                                                          log: dir.appendingPathComponent("coordinator.log"))
            defer { coordinator.kill9() }
            let base = coordinator.address(after: "[dashboard] http://", before: "/ (live page)")
            let page = try #require(base.flatMap { URL(string: $0 + "/") }, "the coordinator names its dashboard: \(coordinator.output)")
            let workers = try (1...2).map { i in
                try ClusterTests.Background(["worker", "--coordinator", endpoint, "--slots", "1", "--name", "live-w\(i)"],
                                            log: dir.appendingPathComponent("worker\(i).log"))
            }
            defer { for worker in workers { worker.kill9() } }
            let profile = dir.appendingPathComponent("chromium-profile")
            func dom() throws -> String { try ReportCommandTests.runChromium(["--dump-dom", "--virtual-time-budget=3000"], page: page, profile: profile).0 }
            var connected = false
            let connectDeadline = Date().addingTimeInterval(60)
            while !connected && Date() < connectDeadline {
                connected = try dom().components(separatedBy: ">connected<").count - 1 == 2
            }
            #expect(connected, "both workers shown as connected")
            workers[0].kill9()
            let killed = Date()
            var lost = false
            while !lost && Date().timeIntervalSince(killed) < 30 {
                let text = try dom()
                // The killed worker's row says lost; the other stays connected.
                lost = text.range(of: #"live-w1</td><td>[^<]*</td><td class="lost">lost<"#, options: .regularExpression) != nil
                    && text.range(of: #"live-w2</td><td>[^<]*</td><td class="connected">connected<"#, options: .regularExpression) != nil
            }
            let seconds = Date().timeIntervalSince(killed)
            #expect(lost && seconds < 30, "the killed worker shown as lost after \(seconds) s")
            #expect(coordinator.status == nil, "the run goes on")
            // SIGTERM still stops the coordinator: its dashboard leaves the signals to the process
            // (a server that took them kept the coordinator running after SIGTERM).
            coordinator.process.terminate()
            #expect(coordinator.wait(seconds: 20), "the coordinator exits on SIGTERM: \(coordinator.output.suffix(500))")
        }
    }

    /// A page request never holds up the run: two copies of the same latency-bound run (each its
    /// own 300 ms mock, 1 worker with 2 slots) start together, and while they run 4 clients fetch
    /// one copy's page, `/api/status`, `/api/train` and `/metrics` back to back (10 ms apart). The
    /// hammered copy takes as long as the one left alone. Both copies run at the same moment, so
    /// both see the same load from the rest of a busy test run (two runs one after the other saw
    /// different loads, and their gap was noise). The dashboard reads the state file through one
    /// connection (WAL: readers never block the coordinator's writes) on a thread of its own, so the
    /// bound is the runs' own noise; the run ends with requests in flight, and stops its dashboard
    /// gracefully (exit 0). The clients are threads of their own with sockets of their own (not
    /// URLSession's shared queue), so the rest of a busy test run cannot starve them.
    @Test func hammeringTheDashboardDoesNotSlowTheRun() async throws {
        try await offThePool {
            let dir = try TrainCommandTests.temporary()
            let articles = dir.appendingPathComponent("articles.json")
            try ClusterTests.writeArticles(articles, count: 30)
            func start(_ name: String, mock: ClusterTests.Mock) throws -> ClusterTests.Background {
                let config = try ClusterTests.config(dir: dir, name: name, articles: articles, mock: mock, train: false)
                return try ClusterTests.Background(["run", "--config", config.path, "--workers", "1", "--slots", "2", "--dashboard", "127.0.0.1:0"],
                                                   log: dir.appendingPathComponent("\(name).log"))
            }
            let aloneMock = try ClusterTests.Mock(latencyMs: 300), hammeredMock = try ClusterTests.Mock(latencyMs: 300)
            let started = Date()
            let alone = try start("alone", mock: aloneMock), hammered = try start("hammered", mock: hammeredMock)
            defer { alone.kill9(); hammered.kill9() }
            let counts = HammerCounts()
            let clients = DispatchGroup()
            let root = try #require(hammered.address(after: "[dashboard] http://", before: "/ (live page)"), "the run names its dashboard: \(hammered.output)")
            for client in 0..<4 {
                clients.enter()
                Thread.detachNewThread {
                    let paths = ["/", "/api/status", "/api/train", "/metrics"]
                    var index = client
                    while !counts.finished {
                        counts.add(status: PlainHTTPGet.status(root + paths[index % paths.count]))
                        index += 1
                        // A page every 10 ms or so per client, hundreds in a run: the clients' own
                        // loops do not take the 2 cores the runs under test need.
                        usleep(10_000)
                    }
                    clients.leave()
                }
            }
            // Each run's time from the common start to its exit, watched every 20 ms.
            var aloneSeconds: Double?, hammeredSeconds: Double?
            let deadline = started.addingTimeInterval(120)
            while (aloneSeconds == nil || hammeredSeconds == nil) && Date() < deadline {
                if aloneSeconds == nil, alone.status != nil { aloneSeconds = Date().timeIntervalSince(started) }
                if hammeredSeconds == nil, hammered.status != nil {
                    hammeredSeconds = Date().timeIntervalSince(started)
                    counts.finish()
                }
                usleep(20_000)
            }
            counts.finish()
            clients.wait()
            let aloneTime = try #require(aloneSeconds, "the run left alone finishes: \(alone.output.suffix(500))")
            let hammeredTime = try #require(hammeredSeconds, "the hammered run finishes: \(hammered.output.suffix(500))")
            #expect(alone.status == 0, "\(alone.output.suffix(800))")
            #expect(hammered.status == 0, "\(hammered.output.suffix(800))")
            #expect(counts.answered >= 100 && counts.refused.isEmpty, "\(counts.answered) pages served, refused with \(counts.refused)")
            // 30 chunks at 300 ms over 2 slots: ~4.5 s of calls plus start-up; a page request that
            // held the coordinator's loop (or its state file) would add up over hundreds of requests.
            #expect(hammeredTime <= aloneTime * 1.5 + 2, "alone \(aloneTime) s, hammered \(hammeredTime) s")
            print("dashboard hammer: alone \(aloneTime) s, hammered \(hammeredTime) s, \(counts.answered) pages")
        }
    }
}

/// The hammering clients' tallies: pages answered (200) and refused (any other answer than the
/// 503 of a run that has not created its state yet); no answer at all happens as the run ends.
final class HammerCounts: @unchecked Sendable {
    private let lock = NSLock()
    private var ok = 0, other: [Int] = [], done = false
    var answered: Int { lock.lock(); defer { lock.unlock() }; return ok }
    /// The status codes of the refused requests.
    var refused: [Int] { lock.lock(); defer { lock.unlock() }; return other }
    var finished: Bool { lock.lock(); defer { lock.unlock() }; return done }
    func finish() { lock.lock(); done = true; lock.unlock() }
    func add(status: Int?) {
        lock.lock()
        defer { lock.unlock() }
        if status == 200 { ok += 1 } else if let status, status != 503 { other.append(status) }
    }
}
