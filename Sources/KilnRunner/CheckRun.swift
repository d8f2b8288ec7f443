import Foundation
import KilnCheck
import KilnCore
import KilnData
import KilnElle
import KilnLoad
import KilnPipeline
import KilnPostgres
import KilnReport
import KilnScenario
import KilnStack
import KilnStores
import Logging

/// `kiln check`: what the stores hold against the oracle and the run's history (or a scenario's row range), with
/// the checkers the registry composes for it; prints the table and records check.json and the combined verdict in
/// the run directory. `kiln run` calls it in-process after the heal. Errors are `Failure`s with their codes.
public struct CheckRun {
    /// Run directory (Reports/runs/<id>).
    public var runDirectory: String?
    /// Scenario file, instead of a run directory.
    public var scenario: String?
    /// With `scenario`: rows START..END counted as written ok (K/M/B allowed).
    public var range: String?
    /// Comma-separated places to check (default: every place the run wrote).
    public var places: String?
    /// Stack file (default: the one the run ran on, else the scenario's).
    public var stack: String?
    /// Anomalies printed per kind and place.
    public var show = 20
    /// Skip the cross-store invariants.
    public var noInvariants = false

    public init(runDirectory: String? = nil) {
        self.runDirectory = runDirectory
    }

    /// The places `places` may name.
    public static var knownPlaces: [String] { ScannerRegistry.drivers.map(\.place.id) + ["redis.features"] }

    /// A Patroni stack's current leader (REST /leader), so the check reads the node that leads now and never a
    /// replica the stack file happens to name first; no single leader is `stackUnavailable` (69), never a guess.
    static func patroniLeader(_ stack: StackDefinition, logger: Logger) throws -> PrimaryDirectory? {
        guard let patroni = stack.patroni else { return nil }
        return try PatroniRunLeader.directory(patroni, logger: logger)
    }

    /// The stack file `kiln run --stack` copies into the run directory.
    public static let runStackFile = "stack.yaml"

    /// The whole check; `kiln run --check` calls it on the run it just wrote, with the run's primaries (where its
    /// failover faults left them). Without them, the PostgreSQL primary is looked up among the stack's servers
    /// (`PostgresRoles`), so a check after a failover reads the primary and not a standby that could lag.
    /// `nothingWrittenIsValid` (a drill's own check): a run that wrote no place Kiln can read back (a read-only
    /// drill) has nothing that could be lost, and gets an empty, valid check.json instead of the usage error.
    public func check(primaries: PrimaryDirectory? = nil, nothingWrittenIsValid: Bool = false) throws -> KilnExitCode {
        let logger = Logger(label: "kiln.check") { _ in ConsoleLogHandler(logLevel: .info) }
        if let runDirectory, places == nil, scenario == nil {
            // A run of a list-append workload alone (`kiln elle … --run-directory`): no scenario, one place.
            let directory = URL(fileURLWithPath: runDirectory)
            let history = directory.appendingPathComponent("history.jsonl")
            if !ListAppendPlace.workloads(in: directory).isEmpty,
                !FileManager.default.fileExists(atPath: history.path)
            {
                return try Self.checkTransactionsOnly(directory, show: show)
            }
        }
        let (scenarioFile, datasetRows, runDirectoryURL) = try locate()
        let loaded = try LoadScenario.load(contentsOf: scenarioFile, knownOperations: LoadRun.knownOperations(),
                knownSinks: LoadRun.knownSinks())
        // `kiln run --stack F` copies F into the run directory; the check reads the stack the run ran on.
        let runStack = runDirectoryURL.map { $0.appendingPathComponent(Self.runStackFile) }
            .flatMap { FileManager.default.fileExists(atPath: $0.path) ? $0.path : nil }
        let stackDefinition = try (stack ?? runStack).map { try StackDefinition.load(contentsOf: URL(fileURLWithPath: $0)) }
            ?? loaded.stack
        let spec = try DatasetSpec.load(contentsOf: loaded.dataset.spec)
        let dataset: Dataset
        do {
            dataset = try Dataset(spec: spec, seed: loaded.dataset.seed, rows: datasetRows ?? loaded.dataset.rows)
        } catch {
            throw Failure(code: .invalidInput, message: "dataset: \(error)")
        }
        var written: [String: WrittenRows]
        if let runDirectoryURL {
            do {
                written = try WrittenRows.fromHistory(
                    runDirectoryURL.appendingPathComponent("history.jsonl"), datasetRows: dataset.rows)
            } catch let error as HistoryError {
                throw Failure(code: .invalidInput, message: error.description)
            }
            if let pipeline = loaded.pipeline {
                // The load wrote Kafka only; each sink must hold what Kafka acknowledged and the ledger posts.
                written = PipelinePlaces.derive(written, sinks: pipeline.sinks, dataset: dataset)
            }
        } else {
            let selected = try GenerateRange.select(rows: dataset.rows, range: range, shard: nil)
            written = [:]
            for place in RowPlace.all {
                var rows = WrittenRows(place: place, datasetRows: dataset.rows)
                rows.ok.insert(selected)
                written[place.id] = rows
            }
        }
        let context = ClientContext(
            stack: stackDefinition, dataset: dataset, namespace: loaded.namespace, timeout: .seconds(300),
            environment: ProcessInfo.processInfo.environment, logger: logger,
            primaries: try primaries ?? Self.patroniLeader(stackDefinition, logger: logger)
                ?? PostgresRoles.directory(stackDefinition, logger: logger))
        var blackBoxDrivers: [ScannerDriver] = []
        if let blackbox = loaded.blackbox {
            // The user's services fill the mapped places from the entry: each must hold what the entry acked.
            written = BlackBoxPlaces.expected(written, spec: blackbox, dataset: dataset)
            blackBoxDrivers = try BlackBoxCheck.drivers(blackbox, context: context)
        }
        let requested = places.map { $0.split(separator: ",").map(String.init) }
            ?? written.values.filter { $0.ok.population + $0.info.population + $0.failed.population > 0 }
                .map(\.place.id).sorted()
        var drivers: [ScannerDriver] = []
        var featureDrivers: [FeatureScannerDriver] = []
        for placeID in requested {
            if placeID == RowPlace.redisFeatures.id || placeID == RowPlace.redisScores.id {
                if featureDrivers.isEmpty { featureDrivers = ScannerRegistry.featureDrivers }
                continue
            }
            guard let driver = ScannerRegistry.driver(for: placeID)
                ?? blackBoxDrivers.first(where: { $0.place.id == placeID })
            else {
                let known = (ScannerRegistry.drivers + blackBoxDrivers).map(\.place.id).joined(separator: ", ")
                throw Failure(code: .invalidInput, message: "--places: no scanner for '\(placeID)' (known: \(known))")
            }
            drivers.append(driver)
        }
        guard !drivers.isEmpty || !featureDrivers.isEmpty else {
            guard nothingWrittenIsValid, let runDirectoryURL else {
                throw Failure(code: .invalidInput, message: "nothing to check: the run wrote no place Kiln can read back")
            }
            print("nothing to check: the run wrote no place Kiln can read back (no write could be lost)")
            let empty = CheckReport(
                run: runDirectoryURL.lastPathComponent, datasetRows: dataset.rows, places: [], validity: .valid,
                seconds: 0)
            try Self.record(empty, in: runDirectoryURL)
            return .ok
        }
        let names = drivers.map(\.place.id) + (featureDrivers.isEmpty ? [] : [RowPlace.redisFeatures.id])
        logger.info("checking \(names.joined(separator: ", ")) of namespace \(loaded.namespace) against \(dataset.rows) dataset rows")
        let checkContext = CheckContext(
            client: context, written: written, drivers: drivers, featureDrivers: featureDrivers,
            runDirectory: runDirectoryURL, pipeline: loaded.pipeline, blackbox: loaded.blackbox != nil,
            invariants: !noInvariants, requestedPlaces: places.map { $0.split(separator: ",").map(String.init) })
        let checker: ComposedChecker
        do {
            checker = try CheckerRegistry.checker(for: checkContext)
        } catch {
            throw Failure(code: .invalidInput, message: "\(error)")
        }
        let result = checker.check(checkContext)
        let report = CheckReport(
            run: runDirectoryURL?.lastPathComponent ?? loaded.name, datasetRows: dataset.rows, places: result.places,
            validity: result.validity, seconds: result.metrics["seconds"] ?? 0)
        print(CheckTable.text(report, show: show))
        if let runDirectoryURL { try Self.record(report, in: runDirectoryURL) }
        return RunResults(check: report.validity).exitCode
    }

    /// The check of a run directory holding only a list-append history: the `elle.list-append` place, recorded like
    /// any check (check.json, report.json's verdict, summary.md, report.html, junit.xml).
    public static func checkTransactionsOnly(_ directory: URL, show: Int) throws -> KilnExitCode {
        let placeResults = ListAppendPlace.workloads(in: directory).map {
            ListAppendPlace.check(directory: directory, workload: $0)
        }
        var report = CheckReport(
            run: directory.lastPathComponent, datasetRows: 0, places: [], validity: .valid, seconds: 0)
        for place in placeResults { report = report.adding(place) }
        print(CheckTable.text(report, show: show))
        // The first witness of each forbidden kind (check.json, summary.md and report.html have the others).
        for findings in placeResults.compactMap(\.transactional) {
            for kind in findings.forbiddenFound {
                if let witness = findings.witnesses.first(where: { $0.kind.rawValue == kind }) { print(witness.text) }
            }
        }
        try record(report, in: directory)
        return RunResults(check: report.validity).exitCode
    }

    /// Writes check.json and makes report.json, report.html, summary.md and junit.xml say what it found.
    static func record(_ report: CheckReport, in runDirectoryURL: URL) throws {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try encoder.encode(report).write(to: runDirectoryURL.appendingPathComponent("check.json"), options: .atomic)
        print("written: \(runDirectoryURL.appendingPathComponent("check.json").path)")
        recordRPO(report, in: runDirectoryURL)
        recordVerdict(in: runDirectoryURL)
        ReportInput.writeOutputs(runDirectoryURL)
    }

    /// Records in report.json why the run's required check did not run (RunReport.notChecked). Best effort, like
    /// `recordRPO`; without it the report writers still say NOT CHECKED (check.json is absent), with a generic reason.
    public static func recordNotChecked(_ reason: String, in directory: URL) {
        let file = directory.appendingPathComponent("report.json")
        guard let data = try? Data(contentsOf: file), var report = try? RunReport.decode(data) else { return }
        report.notChecked = reason
        if let encoded = try? RunReport.encoder.encode(report) { try? encoded.write(to: file, options: .atomic) }
    }

    /// Puts each drill's RPO (acknowledged writes of its store the check found lost) into the run's report.json, so a
    /// drill's JSON carries it beside RTO. Best effort: a report that cannot be read or written stays as it was.
    static func recordRPO(_ check: CheckReport, in directory: URL) {
        let file = directory.appendingPathComponent("report.json")
        guard let data = try? Data(contentsOf: file), var report = try? RunReport.decode(data),
            let drills = report.drills, !drills.isEmpty
        else { return }
        report.drills = DrillMetrics.withRPO(drills, check: check)
        if let encoded = try? RunReport.encoder.encode(report) { try? encoded.write(to: file, options: .atomic) }
    }

    /// Makes report.json's `verdict` and `exit_code` those of load, faults and the check together (what summary.md,
    /// report.html, junit.xml and `kiln run --check` give), keeping the load's own in `load_verdict`; a consumer
    /// reading report.json alone then sees anomalies. Best effort, like `recordRPO`.
    static func recordVerdict(in directory: URL) {
        guard let run = try? RunData.load(directory) else { return }
        recordVerdict(ReportResult.of(run), of: run, in: directory)
    }

    /// `recordVerdict(in:)` for a run already loaded and judged.
    static func recordVerdict(_ result: ReportResult, of run: RunData, in directory: URL) {
        let file = directory.appendingPathComponent("report.json")
        guard var report = run.report else { return }
        report.loadVerdict = report.loadVerdict ?? report.verdict
        report.verdict = result.verdict
        report.exitCode = result.exitCode.rawValue
        if let encoded = try? RunReport.encoder.encode(report) { try? encoded.write(to: file, options: .atomic) }
    }

    /// The scenario file, dataset rows and run directory to check.
    func locate() throws -> (URL, Int64?, URL?) {
        if let runDirectory {
            let directory = URL(fileURLWithPath: runDirectory)
            let reportFile = directory.appendingPathComponent("report.json")
            guard let data = try? Data(contentsOf: reportFile) else {
                throw Failure(code: .invalidInput, message: "\(reportFile.path): cannot read (is \(runDirectory) a run directory?)")
            }
            let report: RunReport
            do {
                report = try RunReport.decode(data)
            } catch {
                throw Failure(code: .invalidInput, message: "\(reportFile.path): not a Kiln report (\(error))")
            }
            let scenarioFile = scenario.map { URL(fileURLWithPath: $0) }
                ?? URL(fileURLWithPath: report.identity.scenarioFile)
            return (scenarioFile, report.identity.datasetRows, directory)
        }
        guard let scenario else {
            throw Failure(code: .invalidInput, message: "give a run directory, or --scenario FILE with --range")
        }
        guard range != nil else { throw Failure(code: .invalidInput, message: "--scenario needs --range START..END") }
        return (URL(fileURLWithPath: scenario), nil, nil)
    }
}

/// Black-box places of a scenario, resolved against their stores before any scan, with what each compares.
enum BlackBoxCheck {
    static func drivers(_ spec: BlackBoxSpec, context: ClientContext) throws -> [ScannerDriver] {
        let resolved: [(ScannerDriver, FieldMapping)]
        do {
            resolved = try BlackBoxPlaces.drivers(spec, context: context)
        } catch let error as SpecError {
            throw error
        } catch {
            throw Failure(code: .stackUnavailable, message: "black-box places: \(error)")
        }
        print("black-box mode: expected rows = what \(BlackBoxPlaces.entryPlace(spec.entry)) acknowledged"
            + (spec.posted == .approved ? ", approved only (declined must be absent)" : ""))
        for (driver, mapping) in resolved {
            let fields = BlackBoxSpec.fields.compactMap { field in
                mapping.names[field].map { $0 == field ? field : "\(field)=\($0)" }
            }
            let skipped = BlackBoxSpec.fields.filter { mapping.names[$0] == nil }
            // Tables: the columns exist. JSON, hashes and properties: a field counts where a record has it.
            let schemaless = ["kafka", "falkordb", "redis"].contains(driver.place.store)
            print("  \(driver.place.id): \(schemaless ? "compares where present" : "compares") \(fields.joined(separator: ", "))"
                + (skipped.isEmpty ? "" : "; not compared: \(skipped.joined(separator: ", "))"))
        }
        return resolved.map(\.0)
    }
}

enum CheckTable {
    static func text(_ report: CheckReport, show: Int) -> String {
        var table = [["PLACE", "SOURCE", "RESULT", "EXPECTED", "INFO", "SCANNED", "LOST", "DUPLICATED", "CORRUPTED", "PHANTOM", "SECONDS"]]
        for place in report.places {
            table.append([
                place.place, place.source, place.validity.rawValue, String(place.expected),
                "\(place.indeterminatePresent)/\(place.indeterminate)", String(place.scanned),
                String(place.counts["lost"] ?? 0), String(place.counts["duplicated"] ?? 0),
                String(place.counts["corrupted"] ?? 0), String(place.counts["phantom"] ?? 0),
                String(format: "%.1f", place.seconds),
            ])
        }
        var lines = [TextTable.render(table)]
        for place in report.places {
            if let error = place.error { lines.append("\(place.place): unknown: \(error)") }
            if let findings = place.transactional {
                let found = place.counts.sorted { $0.key < $1.key }.map { "\($0.key)×\($0.value)" }
                lines.append(
                    "\(place.place) (\(findings.promised) as \(findings.model)): "
                        + (found.isEmpty ? "no anomaly" : found.joined(separator: " "))
                        + (findings.forbiddenFound.isEmpty
                            ? "" : "; forbidden: " + findings.forbiddenFound.joined(separator: " ")))
            }
            for kind in Anomaly.Kind.allCases {
                let anomalies = place.anomalies.filter { $0.kind == kind }
                guard !anomalies.isEmpty else { continue }
                let total = place.counts[kind.rawValue] ?? Int64(anomalies.count)
                lines.append("\(place.place) \(kind.rawValue) (\(total)):")
                for anomaly in anomalies.prefix(show) {
                    lines.append("  \(anomaly.key ?? "txn_id \(anomaly.txnID)"): \(anomaly.detail)")
                }
                if total > Int64(min(show, anomalies.count)) { lines.append("  … \(total - Int64(min(show, anomalies.count))) more (check.json keeps the first \(PlaceResult.keptPerKind))") }
            }
        }
        lines.append("verdict: \(report.validity.rawValue) (\(String(format: "%.1f", report.seconds)) s)")
        return lines.joined(separator: "\n")
    }
}

/// Which of the stack's PostgreSQL servers is the primary now. A failover drill healed by a rebuild leaves the stack
/// file's primary a standby (until `kiln stack up` fails back); runs and checks then use the promoted replica.
enum PostgresRoles {
    /// The replica that is the primary while the stack file's primary is a standby; nil when the roles are as the
    /// file says or a server cannot be asked (then the file is used as written).
    static func promotedReplica(_ stack: StackDefinition) -> HostPort? {
        PostgresStackConfig.promotedReplica(stack)
    }

    /// A directory with the promoted replica as `postgres`, or nil. (Redis clients find their primary through
    /// Sentinel, not the directory.)
    static func directory(_ stack: StackDefinition, logger: Logger) -> PrimaryDirectory? {
        guard let promoted = promotedReplica(stack) else { return nil }
        logger.info("postgres: \(stack.postgres.primary) is a standby and \(promoted) the primary (a failover drill swapped them; `kiln stack up` fails back): using \(promoted)")
        return PrimaryDirectory(["postgres": promoted])
    }
}
