import Foundation
import KilnCore

/// `kiln bench history`'s measurements: the history's write path (one buffer per phase-second, one write) against
/// Foundation's JSONEncoder and the old string writer, and the read path; each writer's output must decode back.
public enum HistoryBench {
    /// Entries per second of `writer` writing `entries` entries (in phase-second batches of `batch`) to a file,
    /// after checking that its output decodes back to `batch`.
    public static func measure(_ writer: ([HistoryEntry]) throws -> Data, batch: [HistoryEntry], entries: Int) throws -> Double {
        let decoded = try String(decoding: writer(batch), as: UTF8.self).split(separator: "\n").map {
            try JSONDecoder().decode(HistoryEntry.self, from: Data($0.utf8))
        }
        guard decoded == batch else { throw Failure(code: .internalError, message: "a writer's lines do not decode back") }
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("kiln-bench-history-\(getpid()).jsonl")
        FileManager.default.createFile(atPath: file.path, contents: nil)
        defer { try? FileManager.default.removeItem(at: file) }
        let handle = try FileHandle(forWritingTo: file)
        defer { try? handle.close() }
        let started = ContinuousClock.now
        var written = 0
        while written < entries {
            let slice = batch.prefix(entries - written)
            handle.write(try writer(Array(slice)))
            written += slice.count
        }
        return Double(entries) / started.duration(to: .now).seconds
    }

    /// The read path: `HistoryFile.forEachEntry` (the whole `HistoryEntry`, what the checkers use) against a
    /// decoder of the four fields the reconcile reader took before (op, row, rows, outcome), on the same file.
    public static func readRates(batch: [HistoryEntry], entries: Int) throws -> String {
        struct FourFields: Decodable {
            var op: String
            var row: Int64
            var rows: Int64
            var outcome: String
        }
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("kiln-bench-read-\(getpid()).jsonl")
        FileManager.default.createFile(atPath: file.path, contents: nil)
        defer { try? FileManager.default.removeItem(at: file) }
        let handle = try FileHandle(forWritingTo: file)
        var written = 0
        while written < entries {
            let slice = Array(batch.prefix(entries - written))
            handle.write(lineWriter(slice))
            written += slice.count
        }
        try handle.close()
        var started = ContinuousClock.now
        var count = 0
        try HistoryFile.forEachEntry(of: file) { _, _ in count += 1 }
        let whole = Double(count) / started.duration(to: .now).seconds
        started = ContinuousClock.now
        count = 0
        let decoder = JSONDecoder()
        try HistoryFile.forEachLine(of: file) { _, line in
            _ = try decoder.decode(FourFields.self, from: line)
            count += 1
        }
        let four = Double(count) / started.duration(to: .now).seconds
        return String(format: "read: HistoryEntry %.0f entries/s, four fields %.0f entries/s (ratio %.2f)", whole, four, whole / four)
    }

    public static func lineWriter(_ entries: [HistoryEntry]) -> Data {
        var buffer: [UInt8] = []
        buffer.reserveCapacity(entries.count * 200)
        for entry in entries { entry.appendJSONLine(to: &buffer) }
        return Data(buffer)
    }

    public static func jsonEncoder(_ entries: [HistoryEntry]) throws -> Data {
        let encoder = JSONEncoder()
        var data = Data()
        for entry in entries {
            data.append(try encoder.encode(entry))
            data.append(0x0A)
        }
        return data
    }

    /// RunDirectory.appendHistory as it was until 2026-12 (string interpolation per line).
    public static func stringConcatenation(_ entries: [HistoryEntry]) -> Data {
        func escape(_ text: String) -> String {
            var result = ""
            for scalar in text.unicodeScalars {
                switch scalar {
                case "\"": result += "\\\""
                case "\\": result += "\\\\"
                case _ where scalar.value < 0x20: result += String(format: "\\u%04x", scalar.value)
                default: result.unicodeScalars.append(scalar)
                }
            }
            return result
        }
        var text = ""
        text.reserveCapacity(entries.count * 160)
        for entry in entries {
            text += #"{"phase":"\#(escape(entry.phase))","op":"\#(entry.operation.rawValue)","worker":\#(entry.worker),"#
            text += #""row":\#(entry.row),"rows":\#(entry.rows),"outcome":"\#(entry.outcome.rawValue)","#
            if let errorClass = entry.errorClass { text += #""error":"\#(escape(errorClass))","# }
            if let server = entry.server { text += #""server":"\#(escape(server))","# }
            text += #""intended_ns":\#(entry.intendedNanos),"start_ns":\#(entry.startNanos),"end_ns":\#(entry.endNanos)}"#
            text += "\n"
        }
        return Data(text.utf8)
    }
}
