import Foundation
import Testing

/// Every command's `--help`, read from the real executable: it exits 0 and its text is prose
/// (no source-code line continuations leaking through as literal backslashes).
@Suite struct HelpTextTests {
    /// The subcommand names listed under SUBCOMMANDS in a help text.
    static func subcommands(in help: String) -> [String] {
        guard let start = help.range(of: "SUBCOMMANDS:\n") else { return [] }
        // The list ends at the first blank line (then comes "See 'refinery help …'").
        let list = help[start.upperBound...].split(separator: "\n", omittingEmptySubsequences: false).prefix { !$0.isEmpty }
        return list.compactMap { line in
            // A subcommand row starts with exactly two spaces then the name; wrapped abstract lines are indented further.
            guard line.hasPrefix("  "), !line.hasPrefix("   ") else { return nil }
            let name = line.dropFirst(2).prefix { !$0.isWhitespace }
            return name.isEmpty || name.hasPrefix("-") ? nil : String(name)
        }
    }

    @Test func everyCommandsHelpIsCleanProse() throws {
        var pending: [[String]] = [[]]
        var checked = 0
        while let path = pending.popLast() {
            try #require(path.count <= 3, "help recursion went deeper than any command: \(path)")
            let result = try CommandLineTests.run(path + ["--help"])
            let name = path.isEmpty ? "refinery" : "refinery " + path.joined(separator: " ")
            #expect(result.status == 0, "\(name) --help exited \(result.status): \(result.stderr)")
            let backslashLines = result.stdout.split(separator: "\n").filter { $0.hasSuffix("\\") }
            #expect(backslashLines.isEmpty, "\(name) --help shows literal line-continuation backslashes: \(backslashLines)")
            for child in Self.subcommands(in: result.stdout) where child != "help" { pending.append(path + [child]) }
            checked += 1
        }
        // The root, its 18 commands and the data subcommands at least: a parse that found nothing fails here.
        #expect(checked > 30, "only \(checked) help texts were found and checked")
    }
}
