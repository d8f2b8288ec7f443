import Foundation
import KilnBackend
import KilnBackends
import KilnCheck
import KilnCore
import KilnData
import KilnScenario
import Logging

/// `kiln smoke`: the dataset generator's first N rows through every store the stack serves, each checked against the
/// generator — built only from the backends' descriptors (`Backends.all`), so a new backend gets smoke by being
/// listed there, with places and scanners.
///
/// Per backend whose store the stack serves (`Backend.endpoint(in:)` non-nil) and that has places, one after another:
/// 1. open the backend's load client (`driver.open`) on a namespace of this run alone, `setup()` it;
/// 2. write rows 0..<N with the operation that fills each place (`Backend.smokeWriter(for:)`, the place's bulk
///    operation), `batchRows` rows per call; every call's outcome is recorded per place (ok / info / fail) exactly
///    as the load engine's history would;
/// 3. run `afterWrite` (tests plant defects there);
/// 4. read each place back with the backend's scanner and judge it with the reconcile checker (`ReconcileChecker`,
///    what `kiln check` uses): lost, duplicated, corrupted, phantom per place, against the generator (the oracle);
/// 5. `teardown()` the client (removing the namespace's tables, keys, topic, graph) unless `keep`.
///
/// A store that cannot be opened, set up, written or read becomes rows whose `error` names the reason (the client's
/// and scanner's errors name the address); it never stops the other backends. Every blocking call is bounded by
/// `timeout` (the clients' and scanners' `ClientContext.timeout`). Not thread-safe; `run()` blocks.
public struct SmokeRun {
    public var stack: StackDefinition
    /// The oracle and what is written: `dataset.rows` rows, all of them, to every store.
    public var dataset: Dataset
    /// Prefix of everything this run creates (tables, keys, topic, graph); unique per run (`newNamespace()`).
    public var namespace: String
    public var environment: [String: String]
    /// Bound of each blocking call to a store (connect, write, read).
    public var timeout: Duration
    /// Leave what the run wrote in place (no `teardown`).
    public var keep: Bool
    /// The backends to smoke (those the stack does not serve, or without places, are skipped); default every backend.
    public var backends: [Backend]
    /// Rows per write call.
    public var batchRows: Int64 = 5_000
    /// Runs after a backend's writes and before its read-back, on the calling thread; a throw makes the backend's
    /// places not checked (its message in `error`). Tests plant defects here (delete a written row).
    public var afterWrite: ((SmokeWrite) throws -> Void)?
    private let logger: Logger

    public init(
        stack: StackDefinition, dataset: Dataset, logger: Logger, namespace: String = SmokeRun.newNamespace(),
        environment: [String: String] = ProcessInfo.processInfo.environment, timeout: Duration = .seconds(10),
        keep: Bool = false, backends: [Backend] = Backends.all
    ) {
        self.stack = stack
        self.dataset = dataset
        self.logger = logger
        self.namespace = namespace
        self.environment = environment
        self.timeout = timeout
        self.keep = keep
        self.backends = backends
    }

    /// `smoke_<unix seconds>_<5 digits>`: a valid namespace (lower-case letters, digits and `_`, at most 31) that no
    /// other run uses.
    public static func newNamespace() -> String {
        let seconds = Int(Date().timeIntervalSince1970)
        return "smoke_\(seconds)_\(UInt32.random(in: 0...UInt32.max) % 100_000)"
    }

    /// The generator's first `rows` rows of `spec` with `seed`; errors name the spec file (exit 64).
    public static func dataset(spec url: URL, seed: UInt64, rows: Int) throws -> Dataset {
        let spec = try DatasetSpec.load(contentsOf: url)
        do {
            return try Dataset(spec: spec, seed: seed, rows: Int64(rows))
        } catch {
            throw SpecError(file: url.path, line: 1, column: 1, field: "max_rows", message: error.description)
        }
    }

    /// The backends of `backends` smoke checks on `stack`: served by it, with places.
    public static func served(_ backends: [Backend], by stack: StackDefinition) -> [(backend: Backend, endpoint: HostPort)] {
        backends.compactMap { backend in
            guard !backend.places.isEmpty, let endpoint = backend.endpoint(in: stack) else { return nil }
            return (backend, endpoint)
        }
    }

    /// Smokes every served backend, one after another; one result per place, in registry order.
    public func run() -> [SmokePlaceResult] {
        Self.served(backends, by: stack).flatMap { smoke($0.backend, at: $0.endpoint) }
    }

    // MARK: one backend

    private func smoke(_ backend: Backend, at endpoint: HostPort) -> [SmokePlaceResult] {
        let started = ContinuousClock.now
        var results = backend.places.map {
            SmokePlaceResult(
                store: backend.name, place: $0, endpoint: endpoint.description, operation: backend.smokeWriter(for: $0)?.id,
                rows: dataset.rows)
        }
        func failAll(_ verdict: SmokeVerdict, _ reason: String) {
            for index in results.indices where results[index].error == nil {
                results[index].error = reason
                results[index].failure = verdict
            }
        }
        defer {
            for result in results {
                logger.info(
                    "smoke place checked",
                    metadata: [
                        "kiln.place": "\(result.place.id)", "kiln.endpoint": "\(result.endpoint)",
                        "kiln.result": "\(result.summary)", "kiln.seconds": "\(started.duration(to: .now).roundedSeconds)",
                    ])
            }
        }
        for index in results.indices where results[index].operation == nil {
            results[index].failure = .notSmokeable
            results[index].error = "no single bulk operation writes \(results[index].place.id): list one in "
                + "\(backend.name)'s descriptor (smokeWriters)"
        }
        let writers = results.compactMap { result in backend.smokeWriter(for: result.place) }
        let context = ClientContext(
            stack: stack, dataset: dataset, namespace: namespace, timeout: timeout, environment: environment,
            logger: logger)
        let client: any Client
        do {
            client = try backend.driver.open(context)
        } catch {
            failAll(.unreachable, "connect: \(error)")
            return results
        }
        defer { client.close() }
        do {
            try client.setup()
        } catch {
            failAll(.unreachable, "setup: \(error)")
            return results
        }
        defer {
            if !keep {
                do { try client.teardown() } catch {
                    logger.warning("smoke teardown failed", metadata: ["kiln.store": "\(backend.name)", "kiln.error": "\(error)"])
                }
            }
        }

        // Writes: each distinct writer once over all rows; its outcomes go to every place it fills.
        var written = Dictionary(
            uniqueKeysWithValues: results.map { ($0.place.id, WrittenRows(place: $0.place, datasetRows: dataset.rows)) })
        var firstProblem: [String: Outcome] = [:]
        var seenWriters: Set<String> = []
        for writer in writers where seenWriters.insert(writer.id).inserted {
            let filled = results.map(\.place).filter { backend.smokeWriter(for: $0) == writer }
            var start: Int64 = 0
            while start < dataset.rows {
                let rows = start..<min(start + batchRows, dataset.rows)
                let outcome = client.invoke(writer, Request(rows: rows))
                for place in filled {
                    switch outcome {
                    case .ok: written[place.id]!.ok.insert(rows)
                    case .info: written[place.id]!.info.insert(rows)
                    case .fail: written[place.id]!.failed.insert(rows)
                    }
                    if !outcome.isOK, firstProblem[place.id] == nil { firstProblem[place.id] = outcome }
                }
                start = rows.upperBound
            }
        }
        for index in results.indices where results[index].failure == nil {
            let rows = written[results[index].place.id]!
            results[index].written = rows.ok.population
            if let problem = firstProblem[results[index].place.id] {
                results[index].failure = .unreachable
                results[index].error = "write: \(dataset.rows - rows.ok.population) of \(dataset.rows) rows not "
                    + "acknowledged by \(results[index].operation ?? "?") (first: \(problem))"
            }
        }
        if let afterWrite {
            do {
                try afterWrite(SmokeWrite(backend: backend, context: context))
            } catch {
                failAll(.unreachable, "after write: \(error)")
                return results
            }
        }

        // Read-back: each place with its scanner, judged by the reconcile checker against the generator.
        for index in results.indices where results[index].operation != nil {
            let place = results[index].place
            guard let driver = backend.scanners.first(where: { $0.place == place }) else { continue }
            let scanStarted = ContinuousClock.now
            do {
                let scanner = try driver.open(context)
                defer { scanner.close() }
                let checker = ReconcileChecker(written: written[place.id]!, dataset: dataset)
                try scanner.scan { checker.add($0) }
                results[index].check = checker.finish(
                    source: scanner.source, seconds: scanStarted.duration(to: .now).seconds)
            } catch {
                if results[index].failure == nil {
                    results[index].failure = .unreachable
                    results[index].error = "read back: \(error)"
                }
            }
        }
        return results
    }
}

/// What `SmokeRun.afterWrite` is handed: the backend whose writes just ended, and the context its client and
/// scanners use (`context.namespace` names what the run wrote).
public struct SmokeWrite {
    public var backend: Backend
    public var context: ClientContext
}

/// Why a place was not judged: the store could not be opened, set up, written or read (exit 69), or no operation of
/// its backend is known to fill it (a descriptor bug, exit 70).
public enum SmokeVerdict: String, Sendable {
    /// Written in full, read back, and the reconcile checker found nothing.
    case agrees
    /// Read back, and the reconcile checker found anomalies.
    case disagrees
    /// Not judged: connecting, setup, a write or the read-back failed (the error names the address).
    case unreachable
    /// Not judged: the descriptor names no operation that fills the place.
    case notSmokeable = "not-smokeable"
}

/// One place of one store after the smoke: what was written, what the scanner read back and the reconcile checker's
/// verdict.
public struct SmokePlaceResult: Sendable {
    public var store: String
    public var place: RowPlace
    public var endpoint: String
    /// The operation that wrote the place (`postgres.bulk`), nil when none is known.
    public var operation: String?
    /// Rows the run wrote (the dataset's).
    public var rows: Int64
    /// Rows whose write was acknowledged ok.
    public var written: Int64 = 0
    /// The reconcile checker's result; nil when the place was not read back.
    public var check: PlaceResult?
    /// Why the place was not judged (or not written in full); nil when it was.
    public var error: String?
    /// Why the place was not judged, set with `error` (`unreachable` or `notSmokeable`); nil when it was.
    public var failure: SmokeVerdict?

    public init(store: String, place: RowPlace, endpoint: String, operation: String?, rows: Int64) {
        self.store = store
        self.place = place
        self.endpoint = endpoint
        self.operation = operation
        self.rows = rows
    }

    /// Copies read back (every copy, duplicates counted twice).
    public var readBack: Int64 { check?.scanned ?? 0 }

    /// Rows read back once with every field equal to the generator's (a duplicate's first copy counts).
    public var equal: Int64 {
        guard let check else { return 0 }
        let present = check.expected - (check.counts["lost"] ?? 0) + check.indeterminatePresent
        return max(0, present - (check.counts["corrupted"] ?? 0))
    }

    public var verdict: SmokeVerdict {
        if let failure { return failure }
        guard let check, check.validity == .valid, written == rows else { return .disagrees }
        return .agrees
    }

    public var agrees: Bool { verdict == .agrees }

    /// `ok`, `MISMATCH: 1 lost, 2 corrupted`, `error: …`.
    public var summary: String {
        if let error { return "error: \(error)" }
        if agrees { return "ok" }
        let counts = (check?.counts ?? [:]).filter { $0.value > 0 }.sorted { $0.key < $1.key }
            .map { "\($0.value) \($0.key)" }
        return "MISMATCH: " + (counts.isEmpty ? "read back \(readBack) of \(written)" : counts.joined(separator: ", "))
    }
}

extension Array where Element == SmokePlaceResult {
    /// 0 when every place agrees; 69 when a store could not be reached (whatever the others found); 70 when a place
    /// has no known writer; 1 when a place disagrees; 3 when there was nothing to smoke.
    public var exitCode: KilnExitCode {
        if isEmpty { return .unknown }
        if contains(where: { $0.verdict == .unreachable }) { return .stackUnavailable }
        if contains(where: { $0.verdict == .notSmokeable }) { return .internalError }
        if contains(where: { $0.verdict == .disagrees }) { return .anomaly }
        return .ok
    }
}
