import Foundation
import Glibc
import KilnCore
import KilnData
import KilnScenario
import KilnStack

/// `kiln generate`: a dataset compiled from its spec, described, or its rows encoded to a file or stdout.
public enum RowGeneration {
    /// The spec (default: the checkout's fraud-platform.yaml) compiled for `seed` and `rows`; bad input is exit 64.
    public static func dataset(spec: String?, seed: UInt64, rows: String?) throws -> Dataset {
        let specURL = spec.map { URL(fileURLWithPath: $0) }
            ?? KilnPaths.resolve().home.appendingPathComponent("Generators/fraud-platform.yaml")
        let datasetSpec = try DatasetSpec.load(contentsOf: specURL)
        var rowCount: Int64?
        if let rows {
            guard let parsed = CountSuffix.parse(rows) else {
                throw Failure(code: .invalidInput, message: "--rows: expected a count such as 10M, found '\(rows)'")
            }
            rowCount = Int64(parsed)
        }
        do {
            return try Dataset(spec: datasetSpec, seed: seed, rows: rowCount)
        } catch {
            throw Failure(code: .invalidInput, message: "--rows: \(error)")
        }
    }

    public static func description(of dataset: Dataset, range: Range<Int64>?) -> String {
        let spec = dataset.spec
        let members = dataset.rings.map(\.members.count)
        let started = ContinuousClock.now
        let selected = range ?? 0..<dataset.rows
        let summary = dataset.summary(of: selected, parallelism: ProcessInfo.processInfo.activeProcessorCount)
        let seconds = started.duration(to: .now) / .seconds(1)
        let start = Date(timeIntervalSince1970: Double(spec.startMillis) / 1000)
        let volume: String
        switch spec.rings.volume {
        case .share(let share): volume = "share \(share) of all transactions"
        case .velocity(let perHour): volume = "\(perHour) transactions per member per burst hour"
        }
        let expected = dataset.rings.reduce(0) { $0 + $1.expectedTransactions }
        var lines = [
            "dataset     \(spec.name) (\(spec.source)), seed \(dataset.seed), \(dataset.rows) transactions",
            "entities    \(spec.users) users, \(spec.merchants) merchants, \(spec.devices) devices, "
                + "\(spec.locations) locations",
            "time        \(spec.days) days from \(ISO8601DateFormatter().string(from: start)), hourly arrival buckets",
            "categories  " + spec.categories.map { "\($0.name) \(Int($0.weight))" }.joined(separator: ", "),
            "rings       \(dataset.rings.count) with \(members.reduce(0, +)) members (sizes \(members.min() ?? 0)..."
                + "\(members.max() ?? 0)), \(spec.rings.sharedDevices) shared devices and "
                + "\(spec.rings.sharedMerchants) shared merchants each, \(Double(spec.rings.burstMillis) / 3_600_000) h "
                + "bursts, \(volume); expected ring transactions \(Int(expected.rounded()))",
            "totals      rows \(selected.lowerBound)..\(selected.upperBound): \(summary.count) rows, amount "
                + "\(Self.decimal(summary.amountCents)) "
                + (spec.currencies.count == 1 ? spec.currencies[0].code : "(mixed currencies)")
                + ", \(summary.fraudCount) fraudulent (\(summary.ringCount) in rings), digest "
                + String(format: "%016llx  [%.1f s]", summary.digest, seconds),
        ]
        if !dataset.rings.isEmpty {
            lines.append("ring  size  window (UTC)                  devices  merchants  expected txns")
            let formatter = ISO8601DateFormatter()
            for ring in dataset.rings.prefix(10) {
                let from = formatter.string(from: Date(timeIntervalSince1970: Double(ring.windowStartMillis) / 1000))
                let numbers = String(
                    format: "%4d  %4d  ", ring.id, ring.members.count)
                lines.append(
                    numbers + from
                        + String(
                            format: " +%.1fh  %7d  %9d  %13.1f", Double(ring.windowEndMillis - ring.windowStartMillis)
                                / 3_600_000, ring.devices.count, ring.merchants.count, ring.expectedTransactions))
            }
            if dataset.rings.count > 10 { lines.append("… \(dataset.rings.count - 10) more rings") }
        }
        return lines.joined(separator: "\n")
    }

    static func decimal(_ cents: Int64) -> String {
        let fraction = cents.magnitude % 100
        return "\(cents / 100).\(fraction < 10 ? "0" : "")\(fraction)"
    }

    /// Encodes rows `range` of `dataset` in `format` to `path` ("-": stdout), 8,192 rows per write, with a progress
    /// line on a terminal's stderr. An unwritable path is a usage error naming it.
    public static func write(_ dataset: Dataset, rows range: Range<Int64>, format: RowFormat, to path: String) throws {
        let sink = try OutputSink(path: path)
        var encoder = RowEncoder(format: format, dataset: dataset, capacity: 4 << 20)
        let progress = Progress(total: Int64(range.count), enabled: isatty(STDERR_FILENO) == 1)
        encoder.header()
        var index = range.lowerBound
        while index < range.upperBound {
            let end = min(index + 8_192, range.upperBound)
            encoder.append(dataset, rows: index..<end)
            try encoder.withBytes { try sink.write($0) }
            encoder.removeAll()
            progress.update(done: end - range.lowerBound)
            index = end
        }
        encoder.trailer()
        try encoder.withBytes { try sink.write($0) }
        try sink.close()
        progress.finish()
    }
}

/// A file or stdout written with write(2) in large chunks; an unwritable path is a usage error naming it.
final class OutputSink {
    private let descriptor: Int32
    private let path: String

    init(path: String) throws {
        self.path = path
        if path == "-" {
            descriptor = STDOUT_FILENO
            return
        }
        // open(2) in place: FileManager.createFile writes a temporary file and renames it over the target, which
        // would replace a device such as /dev/null or a FIFO with a regular file.
        let opened = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard opened >= 0 else {
            throw Failure(code: .invalidInput, message: "--out: cannot write \(path): \(String(cString: strerror(errno)))")
        }
        descriptor = opened
    }

    func write(_ bytes: UnsafeRawBufferPointer) throws {
        var offset = 0
        while offset < bytes.count {
            let written = Glibc.write(descriptor, bytes.baseAddress! + offset, bytes.count - offset)
            if written < 0 {
                if errno == EINTR { continue }
                throw Failure(code: .internalError, message: "writing \(path) failed: \(String(cString: strerror(errno)))")
            }
            offset += written
        }
    }

    func close() throws {
        guard path != "-" else { return }
        if Glibc.close(descriptor) != 0 {
            throw Failure(code: .internalError, message: "closing \(path) failed: \(String(cString: strerror(errno)))")
        }
    }
}

/// A progress line on stderr (rows/s, ETA), redrawn at most twice a second; silent when stderr is not a terminal.
final class Progress {
    let total: Int64
    let enabled: Bool
    let started = ContinuousClock.now
    var lastDraw = ContinuousClock.now

    init(total: Int64, enabled: Bool) {
        self.total = total
        self.enabled = enabled
    }

    func update(done: Int64) {
        guard enabled, lastDraw.duration(to: .now) > .milliseconds(500) else { return }
        lastDraw = .now
        let seconds = max(1e-3, started.duration(to: .now) / .seconds(1))
        let rate = Double(done) / seconds
        let eta = rate > 0 ? Double(total - done) / rate : 0
        let line = String(
            format: "\r%lld / %lld rows  %.2f M rows/s  ETA %.0f s   ", done, total, rate / 1e6, eta)
        FileHandle.standardError.write(Data(line.utf8))
    }

    func finish() {
        if enabled { FileHandle.standardError.write(Data("\n".utf8)) }
    }
}
