import Foundation
import RefineryCore
import Testing

/// A run whose every chunk failed stops before curation and training, says why and how to go
/// on; `run --retry-failed`, once the cause is fixed, sends those chunks again.
@Suite struct RetryFailedChunksTests {
    @Test func aRunWhereEveryChunkFailedStopsAndRetryFailedFinishesIt() async throws {
        try await offThePool {
            let (dir, articles) = try ClusterTests.folderWithArticles(count: 2)
            // A server whose every reply holds no pairs: each chunk fails after its invalid replies.
            let empty = try ClusterTests.Mock(latencyMs: 0, extra: ["--pairs", "0"])
            let config = try ClusterTests.config(dir: dir, name: "retry", articles: articles, mock: empty, train: false)
            let failed = try CommandLineTests.run(["run", "--config", config.path, "--workers", "1", "--dashboard", "off"])
            #expect(failed.status != 0, "a run with nothing generated fails: \(failed.stdout)")
            #expect(failed.stderr.contains("every chunk failed") && failed.stderr.contains("the reply has 0 pairs")
                    && failed.stderr.contains("--retry-failed"), "\(failed.stderr)")
            #expect(!failed.stderr.contains("[curate]"), "curation does not run on an empty dataset")
            // Without the flag, the next run says the same: failed chunks stay failed.
            let again = try CommandLineTests.run(["run", "--config", config.path, "--workers", "1", "--dashboard", "off"])
            #expect(again.status != 0 && again.stderr.contains("every chunk failed"), "\(again.stderr)")

            let working = try ClusterTests.Mock(latencyMs: 0)
            _ = try ClusterTests.config(dir: dir, name: "retry", articles: articles, mock: working, train: false)
            let retried = try CommandLineTests.run(["run", "--config", config.path, "--workers", "1", "--dashboard", "off", "--retry-failed"])
            #expect(retried.status == 0, "\(retried.stderr)")
            let queued = retried.stderr.split(separator: "\n").first { $0.contains("failed chunks queued again") }
            #expect(queued.map { !$0.hasPrefix("[generate] 0 ") } == true, "the failed chunks were queued: \(retried.stderr)")
            let data = try String(contentsOf: dir.appendingPathComponent("retry-data.jsonl"), encoding: .utf8)
            #expect(data.split(separator: "\n").count >= 4, "the dataset holds the retried chunks' pairs: \(data.prefix(300))")
        }
    }

    /// Once training has a checkpoint, new chunks would change the dataset under it: refused.
    @Test func retryFailedIsRefusedOnceTrainingHasBegun() async throws {
        try await offThePool {
            let (dir, _) = try ClusterTests.uninterruptedRun(articles: 20, train: true, steps: 2)
            let config = dir.appendingPathComponent("ref.yaml")
            let result = try CommandLineTests.run(["run", "--config", config.path, "--workers", "1", "--dashboard", "off", "--retry-failed"])
            #expect(result.status != 0 && result.stderr.contains("--retry-failed: training has already begun (checkpoint at step 2"),
                    "\(result.stderr)")
        }
    }
}
