import Foundation
import KilnScenario
import KilnStack
import KilnStores

/// What a scenario's bulk phases will write to the disk of an embedded stack, from each backend's measured
/// `diskBytesPerBulkRow`, and the warning `kiln run` logs before the first phase when the stack's filesystem has
/// less free space. An estimate (a warning, never a refusal): a 100M-row nightly that found a full disk only at its
/// index build, 7 minutes in, failed the whole run (BENCHMARKS.md, n100m-s16).
public struct BulkDiskEstimate: Sendable {
    /// Bytes per store with a non-zero footprint, in the scenario's order; saturating (never overflows).
    public var bytesByStore: [(store: String, bytes: Int64)]

    public var totalBytes: Int64 { bytesByStore.reduce(0) { Self.saturatingAdd($0, $1.bytes) } }

    /// Rows per store summed over the bulk phases (a store's `bulk` or other bulk operation), times the store's
    /// per-row footprint in `stack`.
    public init(_ scenario: LoadScenario, stack: StackDefinition, footprint: (String, StackDefinition) -> Int) {
        var rows: [(store: String, rows: Int64)] = []
        for phase in scenario.phases {
            guard case .bulk(let phaseRows, _, let operations, _, _) = phase.executor else { continue }
            for operation in operations {
                let store = String(operation.split(separator: ".")[0])
                if let index = rows.firstIndex(where: { $0.store == store }) {
                    rows[index].rows = Self.saturatingAdd(rows[index].rows, phaseRows)
                } else {
                    rows.append((store, phaseRows))
                }
            }
        }
        bytesByStore = rows.compactMap { entry in
            let perRow = Int64(footprint(entry.store, stack))
            guard perRow > 0 else { return nil }
            let (bytes, overflow) = entry.rows.multipliedReportingOverflow(by: perRow)
            return (entry.store, overflow ? .max : bytes)
        }
    }

    /// With the registered backends' footprints.
    public init(_ scenario: LoadScenario) {
        self.init(scenario, stack: scenario.stack) { store, stack in
            Backends.backend(named: store)?.stack.diskBytesPerBulkRow(stack) ?? 0
        }
    }

    /// The warning for `freeBytes` free on the filesystem of `directory`; nil when the estimate fits.
    public func warning(freeBytes: Int64, directory: String) -> String? {
        guard totalBytes > freeBytes else { return nil }
        let parts = bytesByStore.map { "\($0.store) ~\(Self.gigabytes($0.bytes))" }.joined(separator: ", ")
        return "disk: the bulk phases are expected to write ~\(Self.gigabytes(totalBytes)) (\(parts)) where "
            + "\(directory) keeps the stack's data, and only \(Self.gigabytes(freeBytes)) are free there: the run may "
            + "fail with a full disk (PostgreSQL SQLSTATE 53100) part-way; free space, or load fewer rows"
    }

    /// Free bytes for an unprivileged process on the filesystem holding `url` (statvfs), nil if it cannot be asked.
    public static func freeBytes(at url: URL) -> Int64? {
        var stats = statvfs()
        guard statvfs(url.path, &stats) == 0 else { return nil }
        let (bytes, overflow) = Int64(stats.f_bavail).multipliedReportingOverflow(by: Int64(stats.f_frsize))
        return overflow ? .max : bytes
    }

    static func gigabytes(_ bytes: Int64) -> String { String(format: "%.1f GB", Double(bytes) / 1e9) }

    static func saturatingAdd(_ a: Int64, _ b: Int64) -> Int64 {
        let (sum, overflow) = a.addingReportingOverflow(b)
        return overflow ? .max : sum
    }
}
