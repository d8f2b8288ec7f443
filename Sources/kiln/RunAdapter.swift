import ArgumentParser
import KilnCore
import KilnRunner

struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run a load scenario's phases against a stack and write its run directory.",
        discussion: """
            Writes Reports/runs/<id>/ (scenario.yaml, timeline.jsonl, history.jsonl, histograms/, report.json) as it
            goes; SIGINT or SIGTERM stops the load within about 2 s and still writes the report of what ran (marked
            interrupted). A scenario with faults is a drill, judged by its check: `kiln check` runs after the heal
            unless --no-check is given, and a run whose check did not run is NOT CHECKED (exit 3), never passed.
            Exit codes: 0 every threshold held (and, when checked, every place valid); 1 an anomaly; 2 a threshold
            or drill failed; 3 interrupted, unknown or NOT CHECKED; 64 invalid scenario or usage; 69 a store could
            not be set up.
            `kiln run --list-operations` prints every store operation a scenario's mix may name.
            """
    )

    @Argument(help: "Scenario file, e.g. Scenarios/nightly-regression.yaml.")
    var scenario: String?

    @Option(help: "Directory that holds run directories (default: Reports/runs of this checkout).")
    var runsDirectory: String?

    @Option(help: "Run id (default: UTC time and scenario name).")
    var id: String?

    @Option(name: .customLong("stack"), help: "Stack file to run on instead of the scenario's `stack:` (copied into the run directory as stack.yaml, which `kiln check` then uses), e.g. Scenarios/stacks/embedded-hosts.yaml.")
    var stackFile: String?

    @Option(help: "Override the scenario's dataset rows (K/M/B allowed), e.g. for a quick try of a big scenario.")
    var rows: String?

    @Option(help: "Serve live metrics in Prometheus text format on this port (http://ADDRESS:PORT/metrics).")
    var metricsPort: Int?

    @Option(help: "Address for --metrics-port.")
    var metricsAddress = "127.0.0.1"

    @Option(help: "Continue from an earlier run directory: keep the stores' data (no fresh setup) and let reads and writes start from the rows that run left (same scenario namespace and dataset).")
    var continueFrom: String?

    @Option(name: .customLong("phase"), help: "Run only this phase (repeatable); default: all, in order.")
    var phases: [String] = []

    @Flag(help: "Confirm faults on hosts listed in the scenario's chaos.allow (anything outside the embedded stack).")
    var confirmChaos = false

    @Flag(help: "After the run, run `kiln check` on it (a scenario with faults does this by default); the exit code is then the combined verdict of thresholds, drills and checkers.")
    var check = false

    @Flag(help: "Do not run the check after a scenario with faults: the run is then NOT CHECKED (exit 3 unless a threshold or drill failed), never passed.")
    var noCheck = false

    @Flag(help: "Print the operations each store offers and exit.")
    var listOperations = false

    @OptionGroup var sharding: ShardRunOptions

    @Flag(name: .shortAndLong, help: "Log more detail.")
    var verbose = false

    func run() throws {
        var controller = RunController(scenario: scenario)
        controller.runsDirectory = runsDirectory
        controller.id = id
        controller.stackFile = stackFile
        controller.rows = rows
        controller.metricsPort = metricsPort
        controller.metricsAddress = metricsAddress
        controller.continueFrom = continueFrom
        controller.phases = phases
        controller.confirmChaos = confirmChaos
        controller.check = check
        controller.noCheck = noCheck
        controller.listOperations = listOperations
        controller.sharding = sharding.request
        controller.verbose = verbose
        try exiting { try controller.run() }
    }
}

/// `kiln run`'s sharding options: `--shard i/n`, or `--shards N` with the index from `JOB_COMPLETION_INDEX` (what a
/// Kubernetes Indexed Job sets in each pod), and `--setup-only` (the stores' setup a sharded run does once, first).
struct ShardRunOptions: ParsableArguments {
    @Option(help: "Run shard INDEX/COUNT of the scenario (e.g. 0/4): a disjoint slice of every phase's rows and 1/COUNT of every arrival rate; writes shard.json; thresholds and checks are judged after `kiln merge`.")
    var shard: String?

    @Option(help: "Run one of N shards; the index is read from JOB_COMPLETION_INDEX (a Kubernetes Indexed Job's pod).")
    var shards: Int?

    @Flag(help: "Only set up the scenario's stores (teardown first when `fresh`), then exit: run once before the shards of a sharded run.")
    var setupOnly = false

    var request: ShardRequest { ShardRequest(shard: shard, shards: shards, setupOnly: setupOnly) }
}
