import Foundation
import Logging
import Testing
@testable import RefineryCore

/// Message lines taken apart for the JSON log, and the handler's one object per line.
@Suite struct StructuredLogTests {
    @Test func messageLinesGiveLevelSourceAndText() {
        #expect(LogLineParts("[cluster] worker w1 joined from vm with 4 slots")
                == { var p = LogLineParts(""); p.source = "cluster"; p.message = "worker w1 joined from vm with 4 slots"; return p }())
        let warning = LogLineParts("warning: data.jsonl holds no samples")
        #expect(warning.level == .warning && warning.source.isEmpty && warning.message == "data.jsonl holds no samples")
        let error = LogLineParts("[train] Error: the loss is not finite")
        #expect(error.level == .error && error.source == "train" && error.message == "the loss is not finite")
        #expect(LogLineParts("plain words").message == "plain words")
    }

    final class Lines: @unchecked Sendable {
        var text = ""
        let lock = NSLock()
        func append(_ line: String) { lock.lock(); text += line; lock.unlock() }
    }

    @Test func theHandlerWritesOneJSONObjectPerEvent() throws {
        let lines = Lines()
        var logger = Logger(label: "refinery") { label in JSONLineLogHandler(label: label) { lines.append($0) } }
        logger[metadataKey: "run"] = "r1"
        logger.info("worker w1 joined", source: "cluster")
        logger.log(level: .warning, "retry \"429\"\nwith a newline", metadata: ["attempt": "2"], source: "generate")
        let rows = lines.text.split(separator: "\n")
        #expect(rows.count == 2)
        let first = try JSONValue.parse(String(rows[0])), second = try JSONValue.parse(String(rows[1]))
        #expect(first["level"]?.stringValue == "info" && first["source"]?.stringValue == "cluster" && first["message"]?.stringValue == "worker w1 joined")
        #expect(first["run"]?.stringValue == "r1" && (first["time"]?.stringValue?.count ?? 0) >= 24)
        #expect(second["level"]?.stringValue == "warning" && second["attempt"]?.stringValue == "2")
        #expect(second["message"]?.stringValue == "retry \"429\"\nwith a newline", "escaped, still one line")
    }
}
