import Foundation
import RefineryCore
import Testing

/// `train --report-to tensorboard`: an event file under OUT/runs whose records carry valid
/// checksums and the values of train_log.jsonl (float32), step by step. (scripts/check_tensorboard.py
/// reads the same files with the tensorboard package's own reader.)
@Suite struct TensorBoardReportTests {
    /// (step, tag → value) of every scalar event in a TFRecord file, checking each record's CRCs.
    static func events(_ bytes: [UInt8]) throws -> [(step: Int, values: [String: Float])] {
        func load<T: FixedWidthInteger>(_ at: Int, as: T.Type) -> T {
            bytes[at..<(at + MemoryLayout<T>.size)].reversed().reduce(T(0)) { $0 << 8 | T($1) }
        }
        func varint(_ data: [UInt8], _ index: inout Int) -> UInt64 {
            var value: UInt64 = 0, shift: UInt64 = 0
            while index < data.count {
                let byte = data[index]; index += 1
                value |= UInt64(byte & 0x7F) << shift
                if byte & 0x80 == 0 { break }
                shift += 7
            }
            return value
        }
        var result: [(Int, [String: Float])] = []
        var offset = 0
        while offset < bytes.count {
            let length = Int(load(offset, as: UInt64.self))
            #expect(load(offset + 8, as: UInt32.self) == TensorBoardEvents.maskedCRC32C(Array(bytes[offset..<(offset + 8)])))
            let data = Array(bytes[(offset + 12)..<(offset + 12 + length)])
            #expect(load(offset + 12 + length, as: UInt32.self) == TensorBoardEvents.maskedCRC32C(data))
            offset += 16 + length
            var index = 0, step = 0, values: [String: Float] = [:]
            while index < data.count {
                let key = varint(data, &index)
                switch key {
                case 0x09: index += 8
                case 0x10: step = Int(varint(data, &index))
                case 0x1A: index += Int(varint(data, &index))
                case 0x2A:
                    let end = Int(varint(data, &index)) + index
                    while index < end {
                        _ = varint(data, &index)  // Summary.value
                        let valueEnd = Int(varint(data, &index)) + index
                        var tag = ""
                        while index < valueEnd {
                            let field = varint(data, &index)
                            if field == 0x0A {
                                let count = Int(varint(data, &index))
                                tag = String(decoding: data[index..<(index + count)], as: UTF8.self)
                                index += count
                            } else if field == 0x15 {
                                values[tag] = Float(bitPattern: data[index..<(index + 4)].reversed().reduce(UInt32(0)) { $0 << 8 | UInt32($1) })
                                index += 4
                            } else {
                                throw CoreError("unexpected field \(field) in a summary value")
                            }
                        }
                    }
                default: throw CoreError("unexpected field key \(key) in an event")
                }
            }
            if !values.isEmpty { result.append((step, values)) }
        }
        return result
    }

    @Test func eventFilesHoldTheTrainingLogsValues() async throws {
        try await offThePool {
            let out = try TrainCommandTests.temporary().appendingPathComponent("run")
            let train = try CommandLineTests.run(["train", "--model", TrainCommandTests.llama, "--data", TrainCommandTests.trainData,
                                                  "--output", out.path, "--steps", "6", "--lora-r", "4", "--eval-split", "0.2",
                                                  "--eval-every", "2", "--report-to", "tensorboard"])
            #expect(train.status == 0, "\(train.stderr)")
            let files = try FileManager.default.contentsOfDirectory(atPath: out.appendingPathComponent("runs").path)
            #expect(files.count == 1 && files[0].hasPrefix("events.out.tfevents."), "\(files)")
            let events = try Self.events([UInt8](try Data(contentsOf: out.appendingPathComponent("runs/" + files[0]))))
            let rows = try String(contentsOf: out.appendingPathComponent("train_log.jsonl"), encoding: .utf8).split(separator: "\n")
                .map { try JSONValue.parse(String($0)) }
            #expect(events.count == rows.count, "one event per log row")
            for (event, row) in zip(events, rows) {
                #expect(event.step == row["step"]?.intValue)
                if let eval = row["eval_loss"]?.doubleValue {
                    #expect(event.values["eval/loss"] == Float(eval))
                } else {
                    #expect(event.values["train/loss"] == Float(row["loss"]?.doubleValue ?? .nan))
                    #expect(event.values["train/grad_norm"] == Float(row["grad_norm"]?.doubleValue ?? .nan))
                    #expect(event.values["train/learning_rate"] == Float(row["lr"]?.doubleValue ?? .nan))
                    #expect(event.values["train/tokens"] == Float(row["tokens"]?.doubleValue ?? .nan))
                }
            }
            #expect(events.filter { $0.values["train/tokens_per_second"] != nil }.count == 5, "a rate from the second step on")
            let bad = try CommandLineTests.run(["train", "--model", TrainCommandTests.llama, "--data", TrainCommandTests.trainData,
                                                "--output", out.path + "-2", "--report-to", "wandb"])
            #expect(bad.status != 0 && bad.stderr.contains("--report-to") && bad.stderr.contains("tensorboard"), "\(bad.stderr)")
        }
    }
}
