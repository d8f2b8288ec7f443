import KilnCore

/// One backend's section of a stack file (`redis:`, `postgres:`, …) as its backend parsed it: a typed config the
/// backend defines in its own folder (Sources/Backends/<Store>/), stored in `StackDefinition.sections` under its key.
///
/// Layering: KilnScenario sits below the backends, so it never names a store. The parsers come from above, in a
/// `BackendVocabulary` built from `Backends.all` (KilnStores); the stack parser runs whichever parsers it is handed,
/// and an unknown top-level key is an error naming it.
public protocol StackSection: Sendable {
    /// Every server address the section names, in file order, with the field it was written in (`primary`,
    /// `replicas`): a hosts stack gives each its own host address.
    var addresses: [StackSectionAddress] { get }
    /// Servers of this section that may run under libfaketime (`faketime:`); empty when none can.
    var faketimeServers: [String] { get }
}

extension StackSection {
    public var faketimeServers: [String] { [] }
}

/// A server address in a stack section, and the section field that holds it.
public struct StackSectionAddress: Sendable, Hashable {
    public var field: String
    public var address: HostPort

    public init(_ field: String, _ address: HostPort) {
        self.field = field
        self.address = address
    }
}

/// What a section parser may need from the rest of the stack file.
public struct StackSectionContext: Sendable {
    /// `kind:` of the stack being read (e.g. Redis `server_settings:` are for embedded stacks only).
    public var kind: StackDefinition.Kind

    public init(kind: StackDefinition.Kind) { self.kind = kind }
}

/// A backend's stack-file section: its key and the parser that turns the YAML mapping into the backend's typed
/// config. The parser reads every field it allows and calls `finish()` (unknown fields are errors), and throws
/// `SpecError` with FILE:LINE:COL and the dotted field for bad input (exit 64).
public struct StackSectionParser: Sendable {
    /// The top-level key of the section (`redis`). Unique among the parsers handed to one stack parser.
    public let key: String
    public let parse: @Sendable (YAMLFields, StackSectionContext) throws(SpecError) -> any StackSection

    public init(
        key: String, parse: @escaping @Sendable (YAMLFields, StackSectionContext) throws(SpecError) -> any StackSection
    ) {
        self.key = key
        self.parse = parse
    }
}

/// What the backends (above this module) contribute to reading scenario and stack files: each backend's stack-file
/// section, and the stores a fault proxy can sit in front of. Built from `Backends.all` (`BackendVocabulary.all`
/// in KilnStores); tests may hand a smaller one.
public struct BackendVocabulary: Sendable {
    public var stackSections: [StackSectionParser]
    /// Stores a scenario's `proxy:` may name, in registry order.
    public var proxiable: [String]
    /// The reference pipeline's sinks (the default `pipeline.sinks`, `SinkDriver.isDefault`), in registry order: a
    /// hosts stack gives each sink process a host of its own (`StackDefinition.sinkHosts`, .61–.64).
    public var defaultSinks: [String]

    public init(stackSections: [StackSectionParser], proxiable: [String], defaultSinks: [String] = []) {
        precondition(Set(stackSections.map(\.key)).count == stackSections.count, "two stack sections share a key")
        precondition(defaultSinks.count <= StackDefinition.sinkHostOctets.count, "more default sinks than sink hosts")
        self.stackSections = stackSections
        self.proxiable = proxiable
        self.defaultSinks = defaultSinks
    }
}
