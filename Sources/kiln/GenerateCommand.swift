import ArgumentParser
import Foundation
import KilnCore
import KilnRunner
import KilnData
import KilnScenario
import KilnStack

struct GenerateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate",
        abstract: "Write deterministic synthetic transactions (any row recomputable from spec, seed, rows and index).",
        discussion: """
            Row i is a pure function of (spec, seed, --rows, i): ranges and shards generate independently \
            and concatenate to the whole. `--schema postgres|clickhouse` prints a matching CREATE TABLE. Formats and the stock tools that load them:
              csv          psql -c "\\copy t FROM STDIN (FORMAT csv)"
              copy-binary  psql -c "\\copy t FROM STDIN (FORMAT binary)"
              jsonl        kcat -P -b HOST:PORT -t transactions -l FILE            (message values)
              kafka        kcat -P -b HOST:PORT -t transactions -K '\\t' -l FILE   (key user_id, value json)
              tsv          clickhouse-client --query "INSERT INTO t FORMAT TabSeparated"
              rowbinary    clickhouse-client --query "INSERT INTO t FORMAT RowBinary"
              resp         redis-cli --pipe
              cypher       one parameter map per line for UNWIND $rows
            Examples:
              kiln generate --rows 10M --format csv --out txns.csv
              kiln generate --rows 100M --shard 2/4 --format copy-binary | psql -c "\\copy t FROM STDIN (FORMAT binary)"
              kiln generate --describe
              psql -c "$(kiln generate --schema postgres --table txns)"
            """
    )

    @Option(help: "Dataset spec (default: Generators/fraud-platform.yaml of this checkout).")
    var spec: String?

    @Option(help: "Seed; the same spec, seed and rows always give the same dataset.")
    var seed: UInt64 = 42

    @Option(help: "Dataset size: 5000, 250K, 10M, 1B (default: the spec's `rows`).")
    var rows: String?

    @Option(help: "Only rows START..END of the dataset (0-based, END exclusive, K/M/B allowed; either may be omitted).")
    var range: String?

    @Option(help: "Only shard I of N (1-based) of the selected rows, e.g. 2/4.")
    var shard: String?

    @Option(help: "\(RowFormat.allCases.map(\.rawValue).joined(separator: " | "))")
    var format: String = "csv"

    @Option(help: "Output file, or - for standard output.")
    var out: String = "-"

    @Flag(help: "Print entity counts, exact totals (from the oracle, on all cores) and the planted rings instead of rows.")
    var describe = false

    @Option(help: "Print the CREATE TABLE matching the formats' column order instead of rows: postgres | clickhouse.")
    var schema: String?

    @Option(help: "Table name for --schema.")
    var table = "transactions"

    func run() throws {
        try exiting {
            if let schema {
                guard table.range(of: #"^[A-Za-z_][A-Za-z0-9_.]*$"#, options: .regularExpression) != nil else {
                    throw Failure(code: .invalidInput, message: "--table: '\(table)' is not a plain SQL identifier")
                }
                switch schema {
                case "postgres": print(TransactionSchema.postgres(table: table))
                case "clickhouse": print(TransactionSchema.clickhouse(table: table))
                default:
                    throw Failure(
                        code: .invalidInput, message: "--schema: unknown store '\(schema)' (expected postgres, clickhouse)")
                }
                return .ok
            }
            let dataset = try RowGeneration.dataset(spec: spec, seed: seed, rows: rows)
            let selected = try GenerateRange.select(rows: dataset.rows, range: range, shard: shard)
            if describe {
                print(RowGeneration.description(of: dataset, range: range == nil && shard == nil ? nil : selected))
                return .ok
            }
            guard let rowFormat = RowFormat(rawValue: format) else {
                let allowed = RowFormat.allCases.map(\.rawValue).joined(separator: ", ")
                throw Failure(code: .invalidInput, message: "--format: unknown format '\(format)' (expected \(allowed))")
            }
            try RowGeneration.write(dataset, rows: selected, format: rowFormat, to: out)
            return .ok
        }
    }
}
