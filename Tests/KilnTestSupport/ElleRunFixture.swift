import Foundation
import KilnCheck
import KilnElle

/// A run directory holding a list-append history (and, unless told not, the run description `kiln elle
/// --record-run` writes next to it), in a fresh temporary directory.
public enum ElleRunFixture {
    public static func directory(
        _ transactions: [ListAppendTransaction], model: ConsistencyModel = .serializable, description: Bool = true
    ) throws -> URL {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(TestStack.uniqueName("kiln-elle"))
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try ListAppendTransaction.jsonLines(transactions).write(
            to: directory.appendingPathComponent(ListAppendRunDescription.historyFileName))
        if description {
            try ListAppendRunDescription(
                store: "postgres", isolation: "serializable", model: model, transactions: transactions.count, seed: 1
            ).write(to: directory)
        }
        return directory
    }
}
