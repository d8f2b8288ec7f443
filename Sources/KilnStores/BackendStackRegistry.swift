import Foundation
import KilnCore
import KilnScenario

// The stack side of every backend, derived from `Backends.all` (no store is named here): the stack-file sections and
// proxiable stores the scenario parsers are handed (KilnScenario is below the backends), and the short forms of the
// parsers that pass them.

extension Backends {
    /// Every backend's stack-file section parser, in registry order.
    public static let stackSections: [StackSectionParser] = all.compactMap(\.stack.section)
    /// The stores a fault proxy can sit in front of (`proxy:` in a scenario), in registry order.
    public static let proxiable: [String] = all.filter { $0.stack.proxy != nil }.map(\.name)

    /// The stores of `stores` (backend names, e.g. a scenario's `LoadScenario.stores`) whose stack section `stack`
    /// does not list, with the section each needs: `[("redis", "redis")]`. Empty: the stack serves every store.
    public static func missingSections(for stores: some Sequence<String>, in stack: StackDefinition)
        -> [(store: String, section: String)]
    {
        stores.compactMap { store in
            guard let key = backend(named: store)?.stack.sectionKey, !stack.has(key) else { return nil }
            return (store, key)
        }
    }
}

extension LoadScenario {
    /// Fails with exit-64 text when the scenario's stack does not list a store the scenario drives: "stack file F
    /// has no `redis:` section, which redis (used by scenario S) needs".
    public func checkStackServesStores() throws(SpecError) {
        guard let first = Backends.missingSections(for: stores, in: stack).first else { return }
        let all = Backends.missingSections(for: stores, in: stack)
        throw SpecError(
            file: stack.source, line: 1, column: 1, field: first.section,
            message: "the stack has no " + all.map { "`\($0.section):` section (\($0.store))" }.joined(separator: ", ")
                + ", which \(file.lastPathComponent) uses")
    }
}

extension BackendVocabulary {
    /// The vocabulary of every backend in `Backends.all`.
    public static let all = BackendVocabulary(
        stackSections: Backends.stackSections, proxiable: Backends.proxiable,
        defaultSinks: Backends.all.compactMap { $0.sink?.known.isDefault == true ? $0.name : nil })
}

extension StackDefinition {
    public static func load(contentsOf url: URL) throws(SpecError) -> StackDefinition {
        try load(contentsOf: url, vocabulary: .all)
    }

    public static func parse(_ text: String, file: String) throws(SpecError) -> StackDefinition {
        try parse(text, file: file, vocabulary: .all)
    }

    public static func parse(_ fields: YAMLFields) throws(SpecError) -> StackDefinition {
        try parse(fields, vocabulary: .all)
    }
}

extension StackReference {
    public static func resolve(_ fields: YAMLFields, key: String, relativeTo directory: URL) throws(SpecError)
        -> StackDefinition
    {
        try resolve(fields, key: key, relativeTo: directory, vocabulary: .all)
    }
}

extension LoadScenario {
    /// Every backend's pipeline sink (name, planted bugs, default staleness SLO), in registry order.
    public static let backendSinks: [PipelineSpec.KnownSink] = Backends.all.compactMap(\.sink?.known)

    public static func load(
        contentsOf url: URL, knownOperations: Set<String>, knownSinks: [PipelineSpec.KnownSink] = backendSinks
    ) throws(SpecError) -> LoadScenario {
        try load(contentsOf: url, knownOperations: knownOperations, vocabulary: .all, knownSinks: knownSinks)
    }

    public static func parse(
        _ fields: YAMLFields, file url: URL, knownOperations: Set<String>, knownSinks: [PipelineSpec.KnownSink] = backendSinks
    ) throws(SpecError) -> LoadScenario {
        try parse(fields, file: url, knownOperations: knownOperations, vocabulary: .all, knownSinks: knownSinks)
    }
}

extension SmokeScenario {
    public static func load(contentsOf url: URL) throws(SpecError) -> SmokeScenario {
        try load(contentsOf: url, vocabulary: .all)
    }
}

extension FaultScheduleSpec {
    /// The stores a scenario's `proxy:` may name (`Backends.proxiable`).
    public static var proxiable: [String] { Backends.proxiable }
}
