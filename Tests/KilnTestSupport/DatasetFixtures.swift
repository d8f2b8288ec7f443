import Foundation
import KilnData

/// The checked-in dataset spec (Generators/fraud-platform.yaml) and a million of its rows, for the generator,
/// encoder and oracle tests of both targets.
public enum Fixtures {
    public static let specURL = TestStack.paths.home.appendingPathComponent("Generators/fraud-platform.yaml")
    public static let specText: String = try! String(contentsOf: specURL, encoding: .utf8)
    public static let spec: DatasetSpec = try! DatasetSpec.load(contentsOf: specURL)
    /// 1M rows of the checked-in spec, and the rows themselves (generated once, shared by the distribution tests).
    public static let million: Dataset = try! Dataset(spec: spec, seed: 42, rows: 1_000_000)
    public static let millionRows: [Transaction] = (0..<million.rows).map { million.transaction($0) }

    /// The spec with `old` replaced by `new` (each must occur).
    public static func spec(replacing replacements: [(String, String)]) throws -> DatasetSpec {
        var text = specText
        for (old, new) in replacements {
            precondition(text.contains(old), old)
            text = text.replacingOccurrences(of: old, with: new)
        }
        return try DatasetSpec.parse(text, file: "spec.yaml")
    }
}
