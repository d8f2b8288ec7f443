import Foundation
import KilnScenario

/// Which stack a run directory (`KilnPaths.stack`) belongs to: written by `EmbeddedStack.up` as `stack.json` beside
/// `state.json`, so a command given another stack file can tell that the pids in `state.json` are not its servers.
public struct StackDirectoryOwner: Codable, Sendable, Equatable {
    public static let fileName = "stack.json"
    /// The stack file `up` was given.
    public var stackFile: String
    public var name: String
    /// Server name → `host:port`, as `EmbeddedServer.catalogue` names them.
    public var endpoints: [String: String]

    public init(stackFile: String, name: String, endpoints: [String: String]) {
        self.stackFile = stackFile
        self.name = name
        self.endpoints = endpoints
    }

    public init(_ definition: StackDefinition) {
        self.init(
            stackFile: definition.source, name: definition.name,
            endpoints: StackDirectoryGuard.endpoints(of: definition))
    }

    /// The record in `directory`, nil when there is none or it cannot be read (a stack started before records).
    public static func read(_ directory: URL) -> StackDirectoryOwner? {
        guard let data = try? Data(contentsOf: directory.appendingPathComponent(fileName)) else { return nil }
        return try? JSONDecoder().decode(StackDirectoryOwner.self, from: data)
    }

    public func write(_ directory: URL) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try encoder.encode(self).write(to: directory.appendingPathComponent(Self.fileName), options: .atomic)
    }
}

/// Refuses an embedded stack file whose servers are not the ones the run directory's `state.json` records. Without
/// it, `kiln run --stack PRIVATE_FILE` (or a replay or shrink on it) with `KILN_STACK_DIR` unset reads the DEFAULT
/// stack's `state.json`: its leftover sweep and its fault runner would find — and pause, kill or fail over — the
/// shared stack's servers, since their command lines name that run directory.
///
/// Rule: the directory's `stack.json` (written by `up`) must name the same servers at the same addresses; a
/// directory without one (a stack started before these records, or none started yet) is accepted only when it
/// was given explicitly (KILN_STACK_DIR, --run-directory), is a hosts stack's own default, or the definition's
/// servers are those of the default stack file (Scenarios/stacks/embedded.yaml, e.g. a bundle's copy of it).
public enum StackDirectoryGuard {
    public static func endpoints(of definition: StackDefinition) -> [String: String] {
        Dictionary(
            EmbeddedServer.catalogue(
                definition, runDirectory: URL(fileURLWithPath: "/"), tools: URL(fileURLWithPath: "/"),
                libraries: URL(fileURLWithPath: "/")
            ).map {
                ($0.name, $0.endpoint.description)
            }, uniquingKeysWith: { a, _ in a })
    }

    /// nil when `definition` may use `paths.stack`; else why not and what to do (for an exit 64 message).
    public static func refusal(_ definition: StackDefinition, paths: KilnPaths) -> String? {
        guard definition.kind == .embedded else { return nil }
        let wanted = endpoints(of: definition)
        let directory = paths.stack.path
        let given = paths.stackIsExplicit ? "the stack run directory \(directory) (KILN_STACK_DIR or --run-directory)"
            : "the default stack run directory \(directory) (KILN_STACK_DIR is unset)"
        let fix = "start the stack with its own run directory (KILN_STACK_DIR=DIR kiln stack up --stack \(definition.source)) "
            + "and set KILN_STACK_DIR=DIR for this command too"
        if let owner = StackDirectoryOwner.read(paths.stack) {
            guard owner.endpoints != wanted else { return nil }
            return "\(definition.source): stack '\(definition.name)' (\(summary(wanted))) does not own \(given): "
                + "it belongs to \(owner.stackFile) ('\(owner.name)', \(summary(owner.endpoints))), so faults and the "
                + "leftover sweep would act on that stack's servers; \(fix)"
        }
        guard !paths.stackIsExplicit, definition.network == .loopback else { return nil }
        guard let standard = try? StackDefinition.load(contentsOf: paths.embeddedStackFile) else { return nil }
        let standardEndpoints = endpoints(of: standard)
        guard standardEndpoints != wanted else { return nil }
        return "\(definition.source): stack '\(definition.name)' (\(summary(wanted))) is not the default stack "
            + "\(paths.embeddedStackFile.path), but \(given) holds the default stack's state.json: faults and the "
            + "leftover sweep would act on the default stack's servers (\(summary(standardEndpoints))); \(fix)"
    }

    static func summary(_ endpoints: [String: String]) -> String {
        let primary = endpoints["postgres-primary"].map { "postgres-primary at \($0)" } ?? "\(endpoints.count) servers"
        return endpoints.count > 1 ? "\(primary), …" : primary
    }
}
