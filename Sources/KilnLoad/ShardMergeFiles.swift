import Foundation
import Histogram

/// The file-level parts of `ShardMerge`: histories, timelines and HDR histograms of the shards' run directories.
/// Streaming where the files can be large (histories); used by the merging thread only.
enum ShardMergeFiles {
    /// Merged histograms by phase and operation.
    struct Histograms {
        var latency: [String: [String: Histogram<UInt64>]] = [:]
        var service: [String: [String: Histogram<UInt64>]] = [:]
    }

    /// Adds every shard's `histograms/<phase>/<op>.json` (and `service/<op>.json`) bucket by bucket. A shard without a
    /// histogram for an op adds nothing (it completed none of it — `verify` holds it to that); a file that cannot be
    /// read is a refusal, never skipped (the merged percentiles would silently leave its samples out).
    static func readHistograms(_ shards: [URL]) throws(ShardMerge.Refusal) -> Histograms {
        var result = Histograms()
        let manager = FileManager.default
        let decoder = JSONDecoder()
        for shard in shards {
            let root = shard.appendingPathComponent("histograms")
            for phase in (try? manager.contentsOfDirectory(atPath: root.path)) ?? [] {
                for (subdirectory, isService) in [("", false), ("service", true)] {
                    let directory = root.appendingPathComponent(phase).appendingPathComponent(subdirectory)
                    for file in (try? manager.contentsOfDirectory(atPath: directory.path)) ?? [] where file.hasSuffix(".json") {
                        let url = directory.appendingPathComponent(file)
                        guard let data = try? Data(contentsOf: url),
                            let histogram = try? decoder.decode(Histogram<UInt64>.self, from: data)
                        else { throw ShardMerge.Refusal(description: "\(url.path): not a readable HDR histogram") }
                        let operation = String(file.dropLast(5))
                        if isService {
                            result.service[phase, default: [:]][operation, default: OperationStats.emptyHistogram()]
                                .add(histogram)
                        } else {
                            result.latency[phase, default: [:]][operation, default: OperationStats.emptyHistogram()]
                                .add(histogram)
                        }
                    }
                }
            }
        }
        return result
    }

    /// Writes the merged histograms under `output/histograms/`.
    static func writeHistograms(_ histograms: Histograms, into output: URL) {
        let manager = FileManager.default
        let encoder = JSONEncoder()
        for (isService, table) in [(false, histograms.latency), (true, histograms.service)] {
            for (phase, operations) in table {
                let directory = output.appendingPathComponent("histograms/\(phase)" + (isService ? "/service" : ""))
                try? manager.createDirectory(at: directory, withIntermediateDirectories: true)
                for (operation, histogram) in operations {
                    if let data = try? encoder.encode(histogram) {
                        try? data.write(to: directory.appendingPathComponent("\(operation).json"))
                    }
                }
            }
        }
    }

    /// Appends each shard's `history.jsonl` to `output` in order, adding `"shard":INDEX` to every line, `shift`
    /// nanoseconds to its `intended_ns`, `start_ns` and `end_ns` (onto the earliest shard's clock), and writing the
    /// server behind a fault proxy (`proxies`: listen → upstream) for the proxy's address in `server`.
    static func concatenateHistories(
        _ shards: [(directory: URL, index: Int, shift: Int64, proxies: [String: String])], into output: URL
    ) throws {
        guard FileManager.default.createFile(atPath: output.path, contents: nil) else {
            throw CocoaError(.fileWriteUnknown)
        }
        let writer = try FileHandle(forWritingTo: output)
        defer { try? writer.close() }
        for shard in shards {
            let file = shard.directory.appendingPathComponent("history.jsonl")
            guard FileManager.default.fileExists(atPath: file.path) else { continue }
            let reader = try FileHandle(forReadingFrom: file)
            defer { try? reader.close() }
            var pending = Data()
            var out = Data()
            func emit(_ line: Data) {
                guard !line.isEmpty, line.last == UInt8(ascii: "}") else { return }
                var text = String(decoding: line.dropLast(), as: UTF8.self)
                for (listen, upstream) in shard.proxies {
                    text = text.replacingOccurrences(of: "\"server\":\"\(listen)\"", with: "\"server\":\"\(upstream)\"")
                }
                if shard.shift != 0 {
                    for key in ["\"intended_ns\":", "\"start_ns\":", "\"end_ns\":"] {
                        text = shifted(text, key: key, by: shard.shift)
                    }
                }
                out.append(contentsOf: Array(text.utf8))
                out.append(contentsOf: Array(",\"shard\":\(shard.index)}\n".utf8))
            }
            while let chunk = try reader.read(upToCount: 1 << 20), !chunk.isEmpty {
                pending.append(chunk)
                var start = pending.startIndex
                while let newline = pending[start...].firstIndex(of: 0x0A) {
                    emit(pending[start..<newline])
                    start = pending.index(after: newline)
                }
                pending = Data(pending[start...])
                writer.write(out)
                out.removeAll(keepingCapacity: true)
            }
            emit(pending)
            writer.write(out)
        }
    }

    /// `text` with the integer after `key` increased by `shift` (unchanged when the key is absent).
    static func shifted(_ text: String, key: String, by shift: Int64) -> String {
        guard let keyRange = text.range(of: key) else { return text }
        let digits = text[keyRange.upperBound...].prefix { $0.isNumber || $0 == "-" }
        guard let value = Int64(digits) else { return text }
        let end = text.index(keyRange.upperBound, offsetBy: digits.count)
        return text[..<keyRange.upperBound] + String(max(0, value + shift)) + text[end...]
    }

    /// Sums the shards' `timeline.jsonl` per (phase, second, operation): counts add; p50/p99/max are the largest
    /// shard's. Lines are written in phase order of first appearance, seconds ascending.
    static func sumTimelines(_ shards: [URL], into output: URL) throws {
        struct Values {
            var ok: Int64 = 0, fail: Int64 = 0, info: Int64 = 0, dropped: Int64 = 0, late: Int64 = 0, rows: Int64 = 0
            var p50: Double?, p99: Double?, max: Double?
        }
        var phases: [String] = []
        var seconds: [String: [Int: [String: Values]]] = [:]
        for shard in shards {
            guard let data = try? Data(contentsOf: shard.appendingPathComponent("timeline.jsonl")) else { continue }
            for line in data.split(separator: UInt8(ascii: "\n")) where !line.isEmpty {
                guard let object = try? JSONSerialization.jsonObject(with: Data(line)) as? [String: Any],
                    let phase = object["phase"] as? String, let second = object["second"] as? Int,
                    let ops = object["ops"] as? [String: [String: Any]]
                else { continue }  // a truncated last line of an interrupted shard
                if seconds[phase] == nil { phases.append(phase) }
                for (name, fields) in ops {
                    var values = seconds[phase, default: [:]][second, default: [:]][name] ?? Values()
                    func int(_ key: String) -> Int64 { (fields[key] as? NSNumber)?.int64Value ?? 0 }
                    func larger(_ current: Double?, _ key: String) -> Double? {
                        guard let value = (fields[key] as? NSNumber)?.doubleValue else { return current }
                        return Swift.max(current ?? value, value)
                    }
                    values.ok += int("ok")
                    values.fail += int("fail")
                    values.info += int("info")
                    values.dropped += int("dropped")
                    values.late += int("late")
                    values.rows += int("rows")
                    values.p50 = larger(values.p50, "p50_ms")
                    values.p99 = larger(values.p99, "p99_ms")
                    values.max = larger(values.max, "max_ms")
                    seconds[phase, default: [:]][second, default: [:]][name] = values
                }
            }
        }
        var text = ""
        func number(_ value: Double?) -> String { value.map { String(format: "%.3f", $0) } ?? "null" }
        for phase in phases {
            for (second, ops) in (seconds[phase] ?? [:]).sorted(by: { $0.key < $1.key }) {
                text += #"{"phase":"\#(RunDirectory.escape(phase))","second":\#(second),"ops":{"#
                text += ops.sorted { $0.key < $1.key }.map { name, v in
                    #""\#(name)":{"ok":\#(v.ok),"fail":\#(v.fail),"info":\#(v.info),"dropped":\#(v.dropped),"#
                        + #""late":\#(v.late),"rows":\#(v.rows),"p50_ms":\#(number(v.p50)),"p99_ms":\#(number(v.p99)),"#
                        + #""max_ms":\#(number(v.max))}"#
                }.joined(separator: ",")
                text += "}}\n"
            }
        }
        try Data(text.utf8).write(to: output)
    }
}
