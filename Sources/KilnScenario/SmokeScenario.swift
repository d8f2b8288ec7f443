import Foundation

/// `Scenarios/smoke.yaml`: which stack to use, and how many rows of the dataset generator (`smoke.dataset`, a spec
/// file relative to the scenario; absent: `kiln smoke` uses Generators/fraud-platform.yaml) with which seed to push
/// through every store the stack serves.
public struct SmokeScenario: Sendable {
    public var name: String
    public var stack: StackDefinition
    public var transactions: Int
    public var seed: UInt64
    /// The dataset spec (`smoke.dataset`), nil when the scenario names none.
    public var datasetSpec: URL? = nil

    public static func load(contentsOf url: URL, vocabulary: BackendVocabulary) throws(SpecError) -> SmokeScenario {
        let fields = try YAMLFields.document(contentsOf: url)
        let name = try fields.optionalString("name") ?? url.deletingPathExtension().lastPathComponent
        let stack = try StackReference.resolve(
            fields, key: "stack", relativeTo: url.deletingLastPathComponent(), vocabulary: vocabulary)
        let smoke = try fields.mapping("smoke")
        let transactions = try smoke.int("transactions", default: 10_000, range: 1...10_000_000)
        let seed = try smoke.int("seed", default: 1, range: 0...Int.max)
        let datasetSpec = try smoke.optionalString("dataset").map { path throws(SpecError) in
            let url = URL(fileURLWithPath: path, relativeTo: url.deletingLastPathComponent()).standardizedFileURL
            guard StackReference.isRegularFile(url) else {
                throw smoke.error("dataset", "dataset spec not found (or not a file): \(url.path)")
            }
            return url
        }
        try smoke.finish()
        try fields.finish()
        return SmokeScenario(
            name: name, stack: stack, transactions: transactions, seed: UInt64(seed), datasetSpec: datasetSpec)
    }
}

/// A scenario's `stack:` field: a path to a stack file (relative to the scenario), or an inline stack mapping.
/// Absent means the embedded stack.
public enum StackReference {
    /// True for an existing regular file (or a link to one): not a directory, device or socket.
    static func isRegularFile(_ url: URL) -> Bool {
        let attributes = try? FileManager.default.attributesOfItem(atPath: url.resolvingSymlinksInPath().path)
        return attributes?[.type] as? FileAttributeType == .typeRegular
    }

    public static func resolve(
        _ fields: YAMLFields, key: String, relativeTo directory: URL, vocabulary: BackendVocabulary
    ) throws(SpecError) -> StackDefinition {
        if fields.holdsMapping(key), let inline = try fields.optionalMapping(key) {
            return try StackDefinition.parse(inline, vocabulary: vocabulary)
        }
        if let path = try fields.optionalString(key) {
            let url = URL(fileURLWithPath: path, relativeTo: directory).standardizedFileURL
            guard Self.isRegularFile(url) else {
                throw fields.error(key, "stack file not found (or not a file): \(url.path)")
            }
            return try StackDefinition.load(contentsOf: url, vocabulary: vocabulary)
        }
        let embedded = directory.appendingPathComponent("stacks/embedded.yaml")
        guard FileManager.default.fileExists(atPath: embedded.path) else {
            throw fields.error(
                key, "no `\(key):` given and no stacks/embedded.yaml beside this file: name a stack file or an inline stack")
        }
        return try StackDefinition.load(contentsOf: embedded, vocabulary: vocabulary)
    }
}
