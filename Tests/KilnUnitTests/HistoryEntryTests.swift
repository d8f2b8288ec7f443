import Foundation
import KilnCheck
import KilnCore
import Testing

/// history.jsonl has one type, `HistoryEntry`: its hand-rolled line writer (the run's hot path) must write exactly
/// what its Codable reader decodes back, in the byte format every earlier Kiln wrote (old run directories still check).
@Suite("history entries: one type writes and reads history.jsonl")
struct HistoryEntryTests {
    static let entries: [HistoryEntry] = [
        HistoryEntry(
            phase: "load", operation: "postgres.bulk", worker: 0, row: 0, rows: 100, outcome: .ok, intendedNanos: 1,
            startNanos: 1, endNanos: 2),
        HistoryEntry(
            phase: "mixed", operation: "redis.set", worker: 7, row: 42, rows: 1, outcome: .info, errorClass: "timeout",
            server: "127.0.0.21:16379", intendedNanos: 10, startNanos: 11, endNanos: 12),
        // Quotes, backslashes, control characters, non-ASCII and the extreme integers.
        HistoryEntry(
            phase: "p \"q\" \\ \n\t\u{1}é漢", operation: "kafka.produce", worker: Int.max, row: -1, rows: Int64.min,
            outcome: .fail, errorClass: "sqlstate-23505 \"x\"", server: "[::1]:5432", intendedNanos: UInt64.max,
            startNanos: 0, endNanos: 9_999_999_999),
    ]

    static func temporaryFile(_ text: String) throws -> URL {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("history-\(UUID().uuidString).jsonl")
        try Data(text.utf8).write(to: file)
        return file
    }

    @Test func theLineWriterWritesWhatTheCodableReaderReadsBack() throws {
        let decoder = JSONDecoder()
        for entry in Self.entries {
            var buffer: [UInt8] = []
            entry.appendJSONLine(to: &buffer)
            #expect(buffer.last == UInt8(ascii: "\n"))
            #expect(buffer.dropLast().contains(UInt8(ascii: "\n")) == false, "a line break inside one entry")
            let decoded = try decoder.decode(HistoryEntry.self, from: Data(buffer.dropLast()))
            #expect(decoded == entry)
            // JSONEncoder's own output decodes to the same entry: the two encoders agree on every key.
            #expect(try decoder.decode(HistoryEntry.self, from: JSONEncoder().encode(entry)) == entry)
        }
    }

    @Test func theLineIsByteForByteTheFormatOfEarlierRuns() {
        // Lines as Kiln has written them since the first run directories (RunDirectory.appendHistory, 2026-11).
        #expect(Self.entries[0].jsonLine
            == #"{"phase":"load","op":"postgres.bulk","worker":0,"row":0,"rows":100,"outcome":"ok","intended_ns":1,"start_ns":1,"end_ns":2}"#)
        #expect(Self.entries[1].jsonLine
            == #"{"phase":"mixed","op":"redis.set","worker":7,"row":42,"rows":1,"outcome":"info","error":"timeout","server":"127.0.0.21:16379","intended_ns":10,"start_ns":11,"end_ns":12}"#)
        #expect(Self.entries[2].jsonLine.hasPrefix(#"{"phase":"p \"q\" \\ \u000a\u0009\u0001é漢","#))
    }

    @Test func aFileOfEntriesIsReadBackInOrderWithItsLineNumbers() throws {
        var buffer: [UInt8] = []
        for entry in Self.entries { entry.appendJSONLine(to: &buffer) }
        buffer.append(UInt8(ascii: "\n"))  // an empty line is skipped, not an error
        Self.entries[0].appendJSONLine(to: &buffer)
        buffer.removeLast()  // the last line without its newline still counts
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("history-\(UUID().uuidString).jsonl")
        try Data(buffer).write(to: file)
        defer { try? FileManager.default.removeItem(at: file) }
        var read: [(Int, HistoryEntry)] = []
        try HistoryFile.forEachEntry(of: file) { read.append(($0, $1)) }
        #expect(read.map(\.0) == [1, 2, 3, 5])
        #expect(read.map(\.1) == Self.entries + [Self.entries[0]])
    }

    /// Malformed, truncated, or with an outcome that does not exist: the error names the file and the line.
    @Test(arguments: [
        #"{"phase":"load","op":"postgres.bulk","worker":0,"row":0,"rows":100,"outcome":"ok","intended_ns":1,"start_ns":1,"end_"#,
        #"{"phase":"load","op":"postgres.bulk","worker":0,"row":0,"rows":100,"outcome":"maybe","intended_ns":1,"start_ns":1,"end_ns":2}"#,
        #"{"phase":"load","op":"postgres.bulk","worker":0,"row":0,"outcome":"ok","intended_ns":1,"start_ns":1,"end_ns":2}"#,
        #"{"phase":"load","op":"postgres.bulk","worker":0,"row":"zero","rows":1,"outcome":"ok","intended_ns":1,"start_ns":1,"end_ns":2}"#,
        #"{"phase":"load","op":"postgres.bulk","worker":0,"row":0,"rows":1,"outcome":"ok","intended_ns":-5,"start_ns":1,"end_ns":2}"#,
        "not json at all",
    ])
    func aBadLineIsAnErrorNamingTheFileAndLine(line: String) throws {
        let good = Self.entries[0].jsonLine
        let file = try Self.temporaryFile("\(good)\n\(good)\n\(line)\n\(good)\n")
        defer { try? FileManager.default.removeItem(at: file) }
        var seen = 0
        let error = #expect(throws: HistoryError.self) {
            try HistoryFile.forEachEntry(of: file) { _, _ in seen += 1 }
        }
        #expect(error?.file == file.path)
        #expect(error?.line == 3)
        #expect(error?.description.hasPrefix("\(file.path):3: not a history entry") == true)
        #expect(seen == 2)
    }

    @Test func aMissingFileIsAnErrorNamingIt() {
        let file = URL(fileURLWithPath: "/nonexistent/kiln/history.jsonl")
        let error = #expect(throws: HistoryError.self) { try HistoryFile.forEachEntry(of: file) { _, _ in } }
        #expect(error?.file == file.path)
        #expect(error?.line == 0)
    }

    /// Rows outside the dataset (negative, past its end, or so large that row + rows overflows) are an input error of
    /// that line, never a crash.
    @Test(arguments: [(-1, 1), (9, 2), (0, -3), (5, Int64.max), (Int64.max, 1)] as [(Int64, Int64)])
    func rowsOutsideTheDatasetAreAnErrorNotACrash(row: Int64, rows: Int64) throws {
        let entry = HistoryEntry(
            phase: "p", operation: "postgres.insert", worker: 0, row: row, rows: rows, outcome: .ok, intendedNanos: 0,
            startNanos: 0, endNanos: 1)
        let file = try Self.temporaryFile(entry.jsonLine + "\n")
        defer { try? FileManager.default.removeItem(at: file) }
        let error = #expect(throws: HistoryError.self) { try WrittenRows.fromHistory(file, datasetRows: 10) }
        #expect(error?.line == 1)
        #expect(error?.reason.contains("outside the dataset") == true)
    }

    /// A write past the dataset's end is recorded `fail("dataset-exhausted")` with the row it would have taken and
    /// no rows: it holds nothing, so the check reads past it instead of refusing the whole history.
    @Test func aWriteThatFoundTheDatasetExhaustedHoldsNoRow() throws {
        let written = HistoryEntry(
            phase: "p", operation: "postgres.insert", worker: 0, row: 9, rows: 1, outcome: .ok, intendedNanos: 0,
            startNanos: 0, endNanos: 1)
        let exhausted = HistoryEntry(
            phase: "p", operation: "postgres.insert", worker: 1, row: 12, rows: 0, outcome: .fail,
            errorClass: "dataset-exhausted", intendedNanos: 0, startNanos: 0, endNanos: 1)
        let file = try Self.temporaryFile(written.jsonLine + "\n" + exhausted.jsonLine + "\n")
        defer { try? FileManager.default.removeItem(at: file) }
        let rows = try #require(try WrittenRows.fromHistory(file, datasetRows: 10)["postgres.rows"])
        #expect(rows.ok.population == 1 && rows.ok.contains(9))
        #expect(rows.failed.population == 0)
    }

    @Test func theOperationIDNamesItsStore() {
        #expect(OperationID("redis.bulk-set").store == "redis")
        #expect(OperationID(store: "falkordb", operation: "merge-edge").rawValue == "falkordb.merge-edge")
        #expect(OperationID("nodot").store == "nodot")
    }
}
