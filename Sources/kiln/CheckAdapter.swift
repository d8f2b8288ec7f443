import ArgumentParser
import KilnCore
import KilnRunner

struct CheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Check what the stores hold against the oracle and the run's history, without re-running load.",
        discussion: """
            kiln check RUN_DIR                 every place the run wrote (its history.jsonl), against the stack it ran on
            kiln check --scenario F --range a..b --places postgres.rows,clickhouse.rows
                                               rows [a, b) of the scenario's dataset, as if all were written ok
            Each place (a store's rows, messages, edges or keys) is scanned once, streaming, and every copy is compared
            field by field with the generator's row: lost (acknowledged ok, absent), duplicated, corrupted (a field
            differs), phantom (present but never acknowledged, failed, or unknown to the dataset). Writes that ended
            `info` may be present or absent. Derived places (ClickHouse's per-minute merchant aggregate, the pipeline's
            balances, the graph's PAID edges per user and per merchant) are compared with the oracle's sums of the rows
            their store must hold, by key. Prints a table per place and the exact txn_ids (first 100 per kind), and
            writes check.json into the run directory. A run directory holding elle-history.jsonl (`kiln elle …
            --record-run`) also gets place elle.list-append: Elle's list-append checker against the model its store
            promised, each anomaly with its witness; elle-rw-register-history.jsonl gets place elle.rw-register. Exit codes: 0 valid; 1 an anomaly; 3 a place could not be read
            (unknown); 64 bad input; 69 a store could not be reached at all.
            """
    )

    @Argument(help: "Run directory (Reports/runs/<id>).")
    var runDirectory: String?

    @Option(help: "Scenario file, instead of a run directory.")
    var scenario: String?

    @Option(help: "With --scenario: rows START..END counted as written ok (K/M/B allowed).")
    var range: String?

    @Option(help: "Comma-separated places to check (default: every place the run wrote). Known: \(CheckRun.knownPlaces.joined(separator: ", "))")
    var places: String?

    @Option(help: "Stack file (default: the scenario's).")
    var stack: String?

    @Option(help: "Anomalies printed per kind and place.")
    var show = 20

    @Flag(help: "Skip the cross-store invariants (ClickHouse per-minute totals = PostgreSQL's).")
    var noInvariants = false

    func run() throws {
        var request = CheckRun(runDirectory: runDirectory)
        request.scenario = scenario
        request.range = range
        request.places = places
        request.stack = stack
        request.show = show
        request.noInvariants = noInvariants
        try exiting { try request.check() }
    }
}
