import ArgumentParser
import Foundation
import KilnCore
import KilnRunner
import KilnData
import KilnLoad
import KilnDurability
import KilnScenario
import KilnStack
import KilnStores

/// `kiln validate FILE…`: parses and resolves scenario, stack and dataset spec files — and the files a scenario names
/// (its stack, its dataset spec) — exactly as `kiln run` would, without touching a server. Prints one line per file;
/// exit 0 when every file is valid, 64 when any is not (each error as FILE:LINE:COLUMN: FIELD: MESSAGE).
struct ValidateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "validate",
        abstract: "Check scenario, stack and dataset spec files without touching a server (exit 0 or 64).")

    @Argument(help: "Scenario, smoke scenario, stack or dataset spec files.")
    var files: [String]

    /// What a YAML file is, told by its top-level keys.
    enum FileKind: String {
        case scenario
        case smokeScenario = "smoke scenario"
        case stack
        case datasetSpec = "dataset spec"
        case durabilityDrill = "durability drill"
        case patroniStack = "Patroni stack"
        case patroniDrill = "Patroni drill"

        init?(keys: [String]) {
            if keys.contains("durability") {
                self = .durabilityDrill
            } else if keys.contains("kind") && keys.contains("patroni") {
                self = .patroniStack
            } else if keys.contains("fault") && keys.contains("stack") && !keys.contains("phases") {
                self = .patroniDrill
            } else if keys.contains("phases") {
                self = .scenario
            } else if keys.contains("smoke") {
                self = .smokeScenario
            } else if keys.contains("entities") {
                self = .datasetSpec
            } else if keys.contains("kind") && keys.contains(where: { key in Backends.stackSections.contains { $0.key == key } }) {
                self = .stack  // `kind:` and any backend's section
            } else {
                return nil
            }
        }
    }

    func run() throws {
        try exiting {
            var invalid = 0
            for path in files {
                do {
                    print("ok      \(path): \(try Self.validate(URL(fileURLWithPath: path)))")
                } catch {
                    invalid += 1
                    print("invalid \(error)")
                }
            }
            return invalid == 0 ? .ok : .invalidInput
        }
    }

    /// Validates one file; returns a one-line summary, throws a `SpecError` naming the place of the first problem.
    static func validate(_ url: URL) throws(SpecError) -> String {
        let fields = try YAMLFields.document(contentsOf: url)
        guard let kind = FileKind(keys: fields.keys) else {
            throw SpecError(
                file: url.path, line: 1, column: 1, field: "",
                message: "cannot tell what this file is: a scenario has `phases:`, a smoke scenario `smoke:`, a stack "
                    + "`kind:` and a store's section (`postgres:`, `redis:`…), a dataset spec `entities:`")
        }
        switch kind {
        case .scenario:
            let scenario = try LoadScenario.parse(fields, file: url, knownOperations: LoadRun.knownOperations(),
                knownSinks: LoadRun.knownSinks())
            let spec = try DatasetSpec.load(contentsOf: scenario.dataset.spec)
            let dataset: Dataset
            do {
                dataset = try Dataset(spec: spec, seed: scenario.dataset.seed, rows: scenario.dataset.rows)
            } catch {
                throw SpecError(at: scenario.dataset.rowsSource, field: "dataset.rows", message: "\(error)")
            }
            if let problem = LoadRun.rowsProblem(scenario, datasetRows: dataset.rows) { throw problem }
            if let problem = LoadRun.pipelineProblem(scenario) { throw problem }
            // What `kiln run` refuses before starting on a stack without `network: hosts`, with the same message.
            if let refusal = HostsRequirement.refusal(scenario) { throw refusal }
            // What `kiln run` refuses too: a store the scenario drives that its stack does not list.
            try scenario.checkStackServesStores()
            // What `kiln run` refuses of the faults on a scripted stack (the hardened stack), as far as the files say.
            let notChecked = try ScriptedStackFaultPlan.check(scenario, home: KilnPaths.resolve().home)
            let faults = scenario.faults?.entries.count ?? 0
            return "scenario \(scenario.name): \(scenario.phases.count) phase(s), \(faults) fault(s), stack "
                + "\(scenario.stack.name), dataset \(spec.name) seed \(scenario.dataset.seed)"
                + (notChecked.map { "; faults \($0)" } ?? "")
        case .durabilityDrill:
            let drill = try DurabilityDrillSpec.parse(fields, file: url)
            return "durability drill \(drill.name): \(drill.kind.rawValue), stack \(drill.stack.name)"
        case .smokeScenario:
            let smoke = try SmokeScenario.load(contentsOf: url)
            return "smoke scenario \(smoke.name): \(smoke.transactions) transactions, stack \(smoke.stack.name)"
        case .stack:
            let stack = try StackDefinition.parse(fields)
            return "stack \(stack.name) (\(stack.kind.rawValue))"
        case .datasetSpec:
            let spec = try DatasetSpec.load(contentsOf: url)
            return "dataset spec \(spec.name): \(spec.defaultRows) rows by default"
        case .patroniStack:
            let stack = try PatroniStackSpec.parse(fields)
            return "Patroni stack \(stack.name): \(stack.etcdMembers.count) etcd members, \(stack.nodes.count) nodes"
        case .patroniDrill:
            let drill = try PatroniDrillSpec.parse(fields, directory: url.deletingLastPathComponent())
            return "Patroni drill \(drill.name): \(drill.fault.rawValue), synchronous_mode \(drill.synchronousMode)"
        }
    }
}
