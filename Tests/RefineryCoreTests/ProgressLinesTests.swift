import Testing
@testable import RefineryCore

/// Progress text for a file or pipe: status lines become plain lines, at most one per interval,
/// the final state always kept, nothing longer than the width; on a terminal, unchanged.
@Suite struct ProgressLinesTests {
    @Test func aTerminalRedrawsTheStatusLineAndKeepsMessagesAboveIt() {
        var lines = ProgressLines(isTerminal: true)
        let clear = "\r\u{1B}[K"
        #expect(lines.render("\r[train] step 1/9", now: 0) == clear + "[train] step 1/9")
        // A shorter status clears what the longer one left.
        #expect(lines.render("\r[train] 2/9", now: 0) == clear + "[train] 2/9")
        // A message goes above the status line, which is drawn again.
        #expect(lines.render("[cluster] worker w1 joined\n", now: 0) == clear + "[cluster] worker w1 joined\n[train] 2/9")
        #expect(lines.render("\n", now: 1) == "\n")
        // Without a status showing, messages pass unchanged, and a lone newline too.
        #expect(lines.render("wrote a.json\n", now: 2) == "wrote a.json\n")
        #expect(lines.render("\n", now: 2) == "\n")
        // A status that ends itself leaves nothing to redraw.
        #expect(lines.render("\r[eval] 3/3 samples\n", now: 3) == clear + "[eval] 3/3 samples\n")
        #expect(lines.render("done\n", now: 3) == "done\n")
    }

    @Test func statusLinesAreThrottledAndTheLastOneIsKept() {
        var lines = ProgressLines(isTerminal: false, interval: 5)
        var log = ""
        for step in 1...20 { log += lines.render("\r[generate] \(step)/20 chunks done", now: Double(step)) }
        log += lines.render("\n", now: 21)
        log += lines.render("[generate] finished\n", now: 21)
        #expect(!log.contains("\r"))
        // Steps 1, 6, 11, 16 (five seconds apart) and 20, the state the status ended on.
        #expect(log == ["1", "6", "11", "16", "20"].map { "[generate] \($0)/20 chunks done\n" }.joined() + "[generate] finished\n", "\(log)")
    }

    @Test func aStatusThatEndsItsOwnLineIsAlwaysWritten() {
        var lines = ProgressLines(isTerminal: false, interval: 5)
        var log = lines.render("\r[train] step 1/3  loss 2.0", now: 0)
        log += lines.render("\r[train] step 2/3  loss 1.9  eval_loss 2.1\n", now: 0.5)
        log += lines.render("\r[train] step 3/3  loss 1.8\n", now: 0.6)
        #expect(log == "[train] step 1/3  loss 2.0\n[train] step 2/3  loss 1.9  eval_loss 2.1\n[train] step 3/3  loss 1.8\n", "\(log)")
        // A status written with its carriage return at the end, then a plain message: the status first.
        var score = ProgressLines(isTerminal: false, interval: 5)
        var out = score.render("[score] 1/2 samples\r", now: 0) + score.render("[score] 2/2 samples\r", now: 1)
        out += score.render("warning: something\n", now: 1)
        #expect(out == "[score] 1/2 samples\n[score] 2/2 samples\nwarning: something\n", "\(out)")
        #expect(score.render("\n", now: 2) == "")
    }

    @Test func longLinesWrapAtASpaceWithinTheWidth() {
        let lines = ProgressLines(isTerminal: false, maximumWidth: 40)
        let long = (1...30).map { "/tmp/file\($0)" }.joined(separator: ", ")
        let wrapped = lines.wrap(long).split(separator: "\n")
        #expect(wrapped.count > 1)
        #expect(wrapped.allSatisfy { $0.count <= 40 }, "\(wrapped)")
        #expect(wrapped.dropFirst().allSatisfy { $0.hasPrefix("  ") })
        #expect(wrapped.map { $0.trimmingCharacters(in: .whitespaces) }.joined(separator: " ") == long)
        // A word longer than the width is cut.
        let word = String(repeating: "x", count: 100)
        #expect(lines.wrap(word).split(separator: "\n").allSatisfy { $0.count <= 40 })
        #expect(lines.wrap(word).replacingOccurrences(of: "\n  ", with: "") == word)
    }
}
