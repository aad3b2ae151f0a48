import Foundation
import RefineryCore
import Testing

/// `data generate --budget`: the budget covers the whole state file, so a rerun after the budget
/// stopped a run makes no further call (it used to start counting from zero again).
@Suite struct GenerateBudgetTests {
    @Test func aRerunDoesNotSpendTheBudgetAgain() async throws {
        try await offThePool {
            let (dir, articles) = try ClusterTests.folderWithArticles(count: 12)
            let mock = try ClusterTests.Mock(latencyMs: 0)
            let arguments = ["data", "generate", "--articles", articles.path, "--state", dir.appendingPathComponent("s.db").path,
                             "--out", dir.appendingPathComponent("d.jsonl").path, "--base-url", mock.base, "--model", "mock-model",
                             "--price-input", "100", "--price-output", "100", "--budget", "0.5", "--slots", "1"]
            let first = try CommandLineTests.run(arguments)
            #expect(first.status != 0 && first.stderr.contains("the dollar budget has no room for another call"), "\(first.status) \(first.stdout) \(first.stderr)")
            let afterFirst = try #require(try mock.stats()["requests"]?.intValue)
            #expect(afterFirst >= 1, "the budget paid for some calls")
            let spentMatch = first.stderr.range(of: #"\$[0-9.]+ of \$0\.5000 spent"#, options: .regularExpression)
            #expect(spentMatch != nil, "\(first.stderr)")

            let second = try CommandLineTests.run(arguments)
            #expect(second.status != 0 && second.stderr.contains("the dollar budget has no room for another call"), "\(second.stderr)")
            #expect(try mock.stats()["requests"]?.intValue == afterFirst, "the rerun made no call: the budget was spent before it")
        }
    }
}
