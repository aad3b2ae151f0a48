import Foundation
import RefineryCore
import RefineryStore
import Testing

/// The LLM-backed curation stages on the cluster, their coordinator killed with SIGKILL three
/// times mid-stage: the outputs equal an uninterrupted run's and mock-llm answered no prompt twice.
@Suite(.serialized) struct CurationCallCrashTests {
    typealias Mock = GenerateCrashTests.MockProcess
    typealias Background = ClusterTests.Background

    /// The curate entry of each stage under test, against `base`; `dir` holds side outputs.
    static func stage(_ name: String, base: String, dir: URL, run: String) -> String {
        switch name {
        case "judge":
            return """
                  - judge:
                      base_url: \(base)
                      judges: [{model: judge-a}, {model: judge-b}]
                      min_score: 3
                """
        case "evolve":
            return """
                  - evolve: {base_url: \(base), model: evolver, rounds: 2}
                """
        default:
            return """
                  - feedback:
                      base_url: \(base)
                      models: [answer-a, answer-b]
                      judge: rater
                      preferences: \(dir.appendingPathComponent("\(run)-preferences.jsonl").path)
                """
        }
    }

    @Test(arguments: ["judge", "evolve", "feedback"])
    func aCoordinatorKilledThreeTimesMidStageFinishesLikeAnUninterruptedRunAndPaysNoCallTwice(stage: String) async throws {
        try await offThePool {
            let dir = try TrainCommandTests.temporary()
            let articles = dir.appendingPathComponent("articles.json")
            try ClusterTests.writeArticles(articles, count: 20)
            func config(_ name: String, mock: Mock) throws -> URL {
                let yaml = """
                data:
                  articles: \(articles.path)
                  state: \(dir.appendingPathComponent("\(name).db").path)
                  out: \(dir.appendingPathComponent("\(name)-data.jsonl").path)
                  test_fraction: 0.2
                generate:
                  base_url: \(mock.base)
                  model: mock-model
                curate:
                  - dedup: exact
                \(Self.stage(stage, base: mock.base, dir: dir, run: name))
                """
                let url = dir.appendingPathComponent("\(name).yaml")
                try yaml.write(to: url, atomically: true, encoding: .utf8)
                return url
            }
            let referenceMock = try Mock(latencyMs: 5)
            let reference = try CommandLineTests.run(["run", "--config", try config("ref", mock: referenceMock).path, "--workers", "2"])
            #expect(reference.status == 0, "\(reference.stderr)")

            let mock = try Mock(latencyMs: 250)
            let crashConfig = try config("crash", mock: mock)
            let state = dir.appendingPathComponent("crash.db").path
            let endpoint = FreePort.endpoint()
            let workers = try (1...2).map { i in
                try Background(["worker", "--coordinator", endpoint, "--slots", "4", "--name", "\(stage)-w\(i)"], log: dir.appendingPathComponent("worker\(i).log"))
            }
            var kills = 0
            var answeredAtLastKill = 0
            var coordinator: Background? = nil
            let deadline = Date().addingTimeInterval(300)
            while Date() < deadline {
                let current = try Background(["coordinator", "--config", crashConfig.path, "--listen", endpoint],
                                             log: dir.appendingPathComponent("coordinator\(kills).log"))
                coordinator = current
                if kills >= 3 { break }
                // Kill at a random moment once this coordinator had 25 more calls answered than the last
                // (more than the workers' spools hand back after a restart: new calls were in flight).
                var fired = false
                let aimEnd = Date().addingTimeInterval(90)
                while Date() < aimEnd && current.process.isRunning {
                    let store = try? RunStore(path: state, readOnly: true)
                    let running = (try? store?.meta("stage")) ?? nil
                    let answered = ((try? store?.callTotals()) ?? []).filter { $0.status == "answered" }.map(\.calls).reduce(0, +)
                    if running == stage && answered >= answeredAtLastKill + 25 {
                        Thread.sleep(forTimeInterval: Double.random(in: 0...0.3))
                        fired = true
                        answeredAtLastKill = answered
                        break
                    }
                    Thread.sleep(forTimeInterval: 0.05)
                }
                if !fired { break }
                current.kill9()
                kills += 1
            }
            #expect(kills == 3, "killed \(kills) times during \(stage)")
            #expect(coordinator?.wait(seconds: 180) == true, "the last coordinator finishes")
            #expect(coordinator?.status == 0, "\(coordinator?.output ?? "")")
            for worker in workers { #expect(worker.wait(seconds: 20), "workers exit when the run is over") }
            var outputs = ["-data.jsonl", "-data.test.jsonl"]
            if stage == "feedback" { outputs.append("-preferences.jsonl") }
            for suffix in outputs {
                let a = ClusterTests.read(dir.appendingPathComponent("ref" + suffix).path), b = ClusterTests.read(dir.appendingPathComponent("crash" + suffix).path)
                #expect(a != nil && a == b, "\(suffix) differs from the uninterrupted run's")
            }
            let stats = try mock.stats()
            #expect(stats["prompts_answered_more_than_once"]?.intValue == 0, "a prompt was answered twice: \(stats.compactText)")
            let totals = try RunStore(path: state, readOnly: true).callTotals()
            #expect(totals.allSatisfy { $0.status == "answered" && $0.purpose == stage }, "\(totals)")
            #expect(totals.map(\.calls).reduce(0, +) > 150, "the stage made enough calls to be interrupted: \(totals)")
            // `status` tells the calls apart by stage and outcome.
            let status = try CommandLineTests.run(["status", "--state", state, "--json"])
            #expect(status.status == 0, "\(status.stderr)")
            let calls = try JSONValue.parse(status.stdout)["curation_calls"]?.arrayValue ?? []
            #expect(calls.count == 1 && calls.first?["purpose"]?.stringValue == stage && calls.first?["status"]?.stringValue == "answered")
            #expect(calls.first?["calls"]?.intValue == totals.map(\.calls).reduce(0, +))
        }
    }
}
