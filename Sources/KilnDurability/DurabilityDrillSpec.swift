import Foundation
import KilnCore
import KilnScenario
import KilnStores

/// A durability drill file (`Scenarios/drills/pg-pitr.yaml`, `crash-restart-*.yaml`), run by `kiln run`: a
/// `durability:` block instead of phases. The drill starts its own private server(s) at the stack file's addresses
/// (a private stack on 127.0.34.x; never the shared stack), in a work directory of its own that it removes at the end.
/// Parsing is strict: unknown keys, bad values and combinations a server does not have are `SpecError`s naming
/// FILE:LINE:COLUMN and the field.
public struct DurabilityDrillSpec: Sendable {
    public enum Kind: String, Sendable, CaseIterable {
        case crashRestart = "crash-restart"
        case pgPITR = "pg-pitr"
    }

    /// The server a crash-restart drill kills.
    public enum Server: String, Sendable, CaseIterable {
        case redis
        case falkordb
        case postgres
    }

    /// The persistence setting under test; each has a documented promise (`LossPromise`).
    public enum Setting: String, Sendable, CaseIterable {
        case aofEverySec = "aof-everysec"
        case rdb
        case synchronousCommitOn = "synchronous-commit-on"
        case synchronousCommitOff = "synchronous-commit-off"

        var servers: [Server] {
            switch self {
            case .aofEverySec: [.redis]
            case .rdb: [.redis, .falkordb]
            case .synchronousCommitOn, .synchronousCommitOff: [.postgres]
            }
        }
    }

    /// A defect planted on purpose, so a test can prove the drill's check finds it. `none` in real drills.
    public enum Plant: String, Sendable, CaseIterable {
        case none
        /// crash-restart (Redis/FalkorDB): the server runs with `appendonly no` and `save ""` whatever the setting.
        case appendonlyOff = "appendonly-off"
        /// crash-restart (PostgreSQL): the server runs with `fsync=off`, `synchronous_commit=off` and
        /// `wal_writer_delay=10s` whatever the setting.
        case fsyncOff = "fsync-off"
        /// pg-pitr: each restore stops 3 s after the target it is checked against.
        case targetSkew = "target-skew"
        /// pg-pitr: each restored cluster has one row changed and one deleted before the check.
        case tamperRestored = "tamper-restored"

        var kind: Kind? {
            switch self {
            case .none: nil
            case .appendonlyOff, .fsyncOff: .crashRestart
            case .targetSkew, .tamperRestored: .pgPITR
            }
        }
    }

    public var name: String
    public var file: URL
    public var description: String?
    public var stack: StackDefinition
    public var datasetSpec: URL
    public var seed: UInt64
    public var rows: Int64
    public var kind: Kind
    /// Writes per second over all workers.
    public var rate: Int
    public var workers: Int
    public var timeout: Duration
    public var plant: Plant
    // crash-restart
    public var server: Server
    public var setting: Setting
    /// RDB: a snapshot after this many seconds with at least one change (`save N 1`).
    public var rdbSaveEvery: Int
    public var killAfter: Duration
    /// How long the load keeps writing to the dead server (failed writes) before it stops.
    public var loadAfterKill: Duration
    // pg-pitr
    public var load: Duration
    public var incrementalAt: Duration
    /// Restore targets as offsets from the load's start.
    public var targets: [Duration]
    public var corruptBackup: Bool

    /// True when the file has a top-level `durability:` key (a durability drill, not a load scenario).
    public static func isDurabilityDrill(_ url: URL) -> Bool {
        guard let fields = try? YAMLFields.document(contentsOf: url) else { return false }
        return fields.contains("durability")
    }

    public static func load(contentsOf url: URL) throws(SpecError) -> DurabilityDrillSpec {
        try parse(YAMLFields.document(contentsOf: url), file: url)
    }

    public static func parse(_ fields: YAMLFields, file url: URL) throws(SpecError) -> DurabilityDrillSpec {
        let directory = url.deletingLastPathComponent()
        let name = try fields.optionalString("name") ?? url.deletingPathExtension().lastPathComponent
        guard !name.isEmpty, name.count <= 60,
            name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") })
        else {
            throw fields.error("name", "a drill name is 1–60 letters, digits, - and _ (it names the work directory)")
        }
        let description = try fields.optionalString("description")
        guard fields.contains("stack") else {
            throw fields.error("stack", "required field is missing: a private stack file (the drill kills and restores servers; never the shared stack)")
        }
        let stack = try StackReference.resolve(fields, key: "stack", relativeTo: directory)
        guard stack.kind == .embedded else {
            throw fields.error("stack", "a durability drill starts its own servers: the stack must be `kind: embedded` (found \(stack.kind.rawValue))")
        }
        let datasetFields = try fields.mapping("dataset")
        let specPath = try datasetFields.string("spec")
        let specURL = URL(fileURLWithPath: specPath, relativeTo: directory).standardizedFileURL
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: specURL.path, isDirectory: &isDirectory), !isDirectory.boolValue else {
            throw datasetFields.error("spec", "dataset spec not found (or not a file): \(specURL.path)")
        }
        let seed = UInt64(try datasetFields.int("seed", default: 42, range: 0...Int.max))
        let rows = Int64(try datasetFields.count("rows", default: 100_000, range: 1...100_000_000))
        try datasetFields.finish()

        let d = try fields.mapping("durability")
        let kind: Kind = try d.enumeration("kind")
        let rate = try d.count("rate", default: 200, range: 1...20_000)
        let workers = try d.count("workers", default: 4, range: 1...64)
        let timeout = try positive(d, "timeout", default: .seconds(3), max: .seconds(60))
        let plant: Plant = try d.enumeration("plant", default: Plant.none)
        if let plantKind = plant.kind, plantKind != kind {
            throw d.error("plant", "\(plant.rawValue) is planted in a \(plantKind.rawValue) drill, not \(kind.rawValue)")
        }
        var spec = DurabilityDrillSpec(
            name: name, file: url, description: description, stack: stack, datasetSpec: specURL, seed: seed,
            rows: rows, kind: kind, rate: rate, workers: workers, timeout: timeout, plant: plant, server: .postgres,
            setting: .synchronousCommitOn, rdbSaveEvery: 1, killAfter: .seconds(8), loadAfterKill: .seconds(1),
            load: .seconds(30), incrementalAt: .seconds(12), targets: [], corruptBackup: true)
        switch kind {
        case .crashRestart:
            spec.server = try d.enumeration("server")
            spec.setting = try d.enumeration("setting")
            guard spec.setting.servers.contains(spec.server) else {
                throw d.error("setting", "\(spec.server.rawValue) has no setting \(spec.setting.rawValue) (settings: "
                    + Setting.allCases.filter { $0.servers.contains(spec.server) }.map(\.rawValue).joined(separator: ", ") + ")")
            }
            if plant == .appendonlyOff && spec.server == .postgres || plant == .fsyncOff && spec.server != .postgres {
                throw d.error("plant", "\(plant.rawValue) does not apply to \(spec.server.rawValue)")
            }
            spec.rdbSaveEvery = try d.int("rdb_save_every_s", default: 1, range: 1...3600)
            if d.contains("rdb_save_every_s") && spec.setting != .rdb {
                throw d.error("rdb_save_every_s", "only an rdb setting takes snapshots")
            }
            spec.killAfter = try positive(d, "kill_after", default: .seconds(8), max: .seconds(600))
            spec.loadAfterKill = try d.duration("load_after_kill", default: .seconds(1))
            guard spec.loadAfterKill <= .seconds(60) else { throw d.error("load_after_kill", "at most 60s") }
        case .pgPITR:
            spec.load = try positive(d, "load", default: .seconds(30), max: .seconds(3600))
            spec.incrementalAt = try positive(d, "incremental_at", default: .seconds(12), max: .seconds(3600))
            guard spec.incrementalAt < spec.load else {
                throw d.error("incremental_at", "must be inside the load (load: \(spec.load))")
            }
            let targets = try d.strings("targets")
            guard !targets.isEmpty, targets.count <= 10 else {
                throw d.error("targets", "expected 1 to 10 restore targets (offsets into the load such as 6s)")
            }
            for (index, target) in targets.enumerated() {
                guard let offset = DurationText.parse(target.text), offset > .zero, offset < spec.load else {
                    throw SpecError(
                        file: url.path, line: target.line, column: target.column, field: "durability.targets[\(index)]",
                        message: "'\(target.text)': a restore target is a duration inside the load (0 < target < \(spec.load))")
                }
                spec.targets.append(offset)
            }
            spec.corruptBackup = try d.bool("corrupt_backup", default: true)
        }
        try d.finish()
        try fields.finish()
        return spec
    }

    private static func positive(_ fields: YAMLFields, _ key: String, default fallback: Duration, max: Duration)
        throws(SpecError) -> Duration
    {
        let value = try fields.duration(key, default: fallback)
        guard value > .zero, value <= max else { throw fields.error(key, "must be more than 0 and at most \(max)") }
        return value
    }

    /// The promise of this drill's setting, given what the server reported at setup.
    func promise(walWriterDelayMicros: Int64, lastSnapshotMicros: Int64?) -> LossPromise {
        switch setting {
        case .synchronousCommitOn: .none
        case .synchronousCommitOff: .window(micros: 3 * walWriterDelayMicros)
        case .aofEverySec: .window(micros: 2_000_000)
        case .rdb: .since(micros: lastSnapshotMicros ?? 0)
        }
    }
}
