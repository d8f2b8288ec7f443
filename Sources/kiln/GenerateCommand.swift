import ArgumentParser
import Foundation
import KilnCore
import KilnData
import KilnScenario
import KilnStack

struct GenerateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate",
        abstract: "Write deterministic synthetic transactions (any row recomputable from seed and index).",
        discussion: """
            Examples:
              kiln generate --rows 10M --format csv --out txns.csv
              kiln generate --rows 100M --shard 2/4 --format copy-binary --out - | psql -c "\\copy t FROM STDIN (FORMAT binary)"
              kiln generate --describe
            """
    )

    @Option(help: "Dataset spec (default: Generators/fraud-platform.yaml of this checkout).")
    var spec: String?

    @Option(help: "Seed; the same spec, seed and rows always give the same dataset.")
    var seed: UInt64 = 42

    @Option(help: "Dataset size: 5000, 250K, 10M, 1B (default: the spec's `rows`).")
    var rows: String?

    @Option(help: "Only rows a..b of the dataset (0-based, end exclusive; K/M/B allowed), e.g. 5M..6M.")
    var range: String?

    @Option(help: "Only shard i of n (1-based) of the rows, e.g. 2/4.")
    var shard: String?

    @Option(help: "csv | copy-binary | jsonl | tsv")
    var format: String = "csv"

    @Option(help: "Output file, or - for standard output.")
    var out: String = "-"

    @Flag(help: "Print entity counts, expected totals and the planted rings instead of rows.")
    var describe = false

    func run() throws {
        try exiting {
            let paths = KilnPaths.resolve()
            let specURL = spec.map { URL(fileURLWithPath: $0) }
                ?? paths.home.appendingPathComponent("Generators/fraud-platform.yaml")
            let datasetSpec = try DatasetSpec.load(contentsOf: specURL)
            var rowCount: Int64?
            if let rows {
                guard let parsed = CountSuffix.parse(rows) else {
                    throw Failure(code: .invalidInput, message: "--rows: expected a count such as 10M, found '\(rows)'")
                }
                rowCount = Int64(parsed)
            }
            let dataset: Dataset
            do {
                dataset = try Dataset(spec: datasetSpec, seed: seed, rows: rowCount)
            } catch {
                throw Failure(code: .invalidInput, message: "--rows: \(error)")
            }
            if describe {
                print(Self.description(of: dataset))
                return .ok
            }
            guard let rowFormat = RowFormat(rawValue: format) else {
                let allowed = RowFormat.allCases.map(\.rawValue).joined(separator: ", ")
                throw Failure(code: .invalidInput, message: "--format: unknown format '\(format)' (expected \(allowed))")
            }
            let selected = try GenerateRange.select(rows: dataset.rows, range: range, shard: shard)
            let sink = try OutputSink(path: out)
            var encoder = RowEncoder(format: rowFormat, dataset: dataset)
            let progress = Progress(total: selected.count, enabled: isatty(STDERR_FILENO) == 1)
            encoder.header()
            var index = selected.lowerBound
            while index < selected.upperBound {
                let end = min(index + 16_384, selected.upperBound)
                for row in index..<end { encoder.append(dataset.transaction(row)) }
                try sink.write(encoder.bytes)
                encoder.removeAll()
                progress.update(done: end - selected.lowerBound)
                index = end
            }
            encoder.trailer()
            try sink.write(encoder.bytes)
            try sink.close()
            progress.finish()
            return .ok
        }
    }

    static func description(of dataset: Dataset) -> String {
        let spec = dataset.spec
        let members = dataset.rings.reduce(0) { $0 + $1.members.count }
        var lines = [
            "dataset \(spec.name) (\(spec.source)), seed \(dataset.seed), \(dataset.rows) transactions",
            "entities: \(spec.users) users, \(spec.merchants) merchants, \(spec.devices) devices, \(spec.locations) locations",
            "time: \(spec.days) days from \(ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: Double(spec.startMillis) / 1000)))",
            "rings: \(dataset.rings.count) with \(members) members, \(spec.rings.sharedDevices) shared devices and "
                + "\(spec.rings.sharedMerchants) shared merchants each, \(spec.rings.burstSeconds / 3600) h bursts",
        ]
        // Exact totals need every row; describe computes them for datasets up to 10M rows.
        if dataset.rows <= 10_000_000 {
            let summary = dataset.summary(of: 0..<dataset.rows)
            lines.append(
                "totals: \(summary.count) rows, amount \(summary.amountCents / 100).\(String(format: "%02d", summary.amountCents % 100)) "
                    + "\(spec.currency), \(summary.fraudCount) fraudulent, digest \(String(summary.digest, radix: 16))")
        } else {
            lines.append("totals: computed for datasets up to 10M rows (use --range with `kiln check` for larger ones)")
        }
        return lines.joined(separator: "\n")
    }
}

/// `--range a..b` and `--shard i/n`, validated against the dataset size.
enum GenerateRange {
    static func select(rows: Int64, range: String?, shard: String?) throws -> Range<Int64> {
        var selected: Range<Int64> = 0..<rows
        if let range {
            let parts = range.components(separatedBy: "..")
            guard parts.count == 2, let start = CountSuffix.parse(parts[0]), let end = CountSuffix.parse(parts[1]),
                start <= end
            else {
                throw Failure(code: .invalidInput, message: "--range: expected START..END such as 5M..6M, found '\(range)'")
            }
            guard Int64(end) <= rows else {
                throw Failure(code: .invalidInput, message: "--range: \(range) goes beyond the dataset's \(rows) rows")
            }
            selected = Int64(start)..<Int64(end)
        }
        if let shard {
            let parts = shard.split(separator: "/")
            guard parts.count == 2, let i = Int64(parts[0]), let n = Int64(parts[1]), n >= 1, (1...n).contains(i) else {
                throw Failure(
                    code: .invalidInput, message: "--shard: expected I/N with 1 <= I <= N such as 2/4, found '\(shard)'")
            }
            let size = Int64(selected.count)
            let lower = selected.lowerBound + size * (i - 1) / n
            let upper = selected.lowerBound + size * i / n
            selected = lower..<upper
        }
        return selected
    }
}

/// A file or stdout written in large chunks; an unwritable path is a usage error naming it.
final class OutputSink {
    private let handle: FileHandle
    private let path: String

    init(path: String) throws {
        self.path = path
        if path == "-" {
            handle = FileHandle.standardOutput
            return
        }
        // open(2) in place: FileManager.createFile writes a temporary file and renames it over the target, which
        // would replace a device such as /dev/null or a FIFO with a regular file.
        let descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else {
            throw Failure(code: .invalidInput, message: "--out: cannot write \(path): \(String(cString: strerror(errno)))")
        }
        handle = FileHandle(fileDescriptor: descriptor, closeOnDealloc: true)
    }

    func write(_ bytes: [UInt8]) throws {
        guard !bytes.isEmpty else { return }
        do {
            try bytes.withUnsafeBytes { try handle.write(contentsOf: Data(bytesNoCopy: UnsafeMutableRawPointer(mutating: $0.baseAddress!), count: $0.count, deallocator: .none)) }
        } catch {
            throw Failure(code: .internalError, message: "writing \(path) failed: \(error)")
        }
    }

    func close() throws {
        if path != "-" { try handle.close() }
    }
}

/// A progress line on stderr (rows/s, ETA), redrawn at most twice a second; silent when stderr is not a terminal.
final class Progress {
    let total: Int
    let enabled: Bool
    let started = ContinuousClock.now
    var lastDraw = ContinuousClock.now

    init(total: Int, enabled: Bool) {
        self.total = total
        self.enabled = enabled
    }

    func update(done: Int64) {
        guard enabled, lastDraw.duration(to: .now) > .milliseconds(500) else { return }
        lastDraw = .now
        let elapsed = started.duration(to: .now)
        let seconds = max(1e-3, Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
        let rate = Double(done) / seconds
        let eta = rate > 0 ? Double(Int64(total) - done) / rate : 0
        let line = String(
            format: "\r%lld / %d rows  %.1f M rows/s  ETA %.0f s   ", done, total, rate / 1e6, eta)
        FileHandle.standardError.write(Data(line.utf8))
    }

    func finish() {
        if enabled { FileHandle.standardError.write(Data("\n".utf8)) }
    }
}
