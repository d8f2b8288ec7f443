import ArgumentParser
import KilnCore
import KilnRunner

/// `kiln patroni drill FILE`: an HA drill against a Patroni stack, judged by its check.
struct PatroniCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "patroni",
        abstract: "HA drills against a Patroni stack (Scenarios/drills/patroni-*.yaml).",
        subcommands: [Drill.self])

    enum SynchronousMode: String, ExpressibleByArgument, CaseIterable { case on, off }

    struct Drill: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write numbered transactions through Patroni's leader while one fault acts, then check: "
                + "acknowledged writes lost (by txn_id), split-brain, time to a new leader, unavailability, RTO. "
                + "Exit 0 valid, 1 anomaly, 2 fault not in effect, 3 unknown/not checked, 64 invalid, 69 stack down.")
        @Argument(help: "Drill file (Scenarios/drills/patroni-*.yaml).") var file: String
        @Option(help: "Override the file's synchronous_mode (on|off).") var synchronousMode: SynchronousMode?
        @Option(help: "Run directory parent.") var runsDirectory = "Reports/runs"
        @Option(help: "Run id (default: time and drill name).") var id: String?
        @Option(help: "Planted loss: delete this many acknowledged rows from the final leader before the check (proves the check finds lost writes).")
        var plantLoss = 0
        @Flag(name: .shortAndLong) var verbose = false

        func validate() throws {
            guard (0...1_000_000).contains(plantLoss) else {
                throw ValidationError("--plant-loss: 0 to 1000000, found \(plantLoss)")
            }
        }

        func run() throws {
            var request = PatroniDrillRequest(file: file)
            request.synchronousMode = synchronousMode.map { $0 == .on }
            request.runsDirectory = runsDirectory
            request.id = id
            request.plantLoss = plantLoss
            request.verbose = verbose
            try exiting { try request.run() }
        }
    }
}
