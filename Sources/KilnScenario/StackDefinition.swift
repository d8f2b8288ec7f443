import Foundation
import KilnCore

/// Where each store lives. One file per stack under `Scenarios/stacks/`: the embedded local stack (default), the
/// docker-compose stack, or a user's own hosts. Secrets never appear in the file: a `password_env` field names the
/// environment variable that holds the password.
///
/// Stack-wide fields (`kind`, `name`, `chaos_target`, `faketime`, `network`, `client_groups`…) are read here; every
/// other top-level key is one backend's section (`postgres:`, `redis:`…), read by the `StackSectionParser` that
/// backend contributes. KilnScenario is below the backends (it cannot import them), so the parsers are handed in
/// from above: `parse(_:vocabulary:)` with `BackendVocabulary.all` (KilnStores, derived from `Backends.all`), which
/// also supplies the short forms `StackDefinition.load(contentsOf:)` and `parse(_:file:)`. Sections are optional (a
/// PostgreSQL-only stack is valid); a key that is neither a stack field nor a known section is an error naming it.
public struct StackDefinition: Sendable {
    public enum Kind: String, Sendable, CaseIterable {
        /// Local processes started by `kiln stack up`.
        case embedded
        /// `docker-compose.yml` of this repository.
        case compose
        /// Hosts Kiln does not manage.
        case external
        /// PostgreSQL under Patroni (`Scenarios/stacks/embedded-patroni.yaml`, started by `kiln stack up` through
        /// `PatroniCluster`): read as a PostgreSQL-only stack whose primary is the first node and whose replicas are the
        /// others (a run starts on whichever node leads, `PostgresRoles`).
        case patroni
    }

    /// How the embedded servers are reached (`network:`).
    public enum Network: String, Sendable, CaseIterable {
        /// Every server binds its own 127.0.0.x alias in the root namespace (the default).
        case loopback
        /// Every server runs in its own network namespace with its own 10.213.7.x address, joined to the bridge
        /// kiln-br0 (10.213.7.1, Kiln's client host); the namespaces reach nothing beyond 10.213.7.0/24.
        case hosts
    }

    public var name: String
    public var kind: Kind
    /// Whether faults may act on these servers. External stacks default to false.
    public var chaosTarget: Bool
    /// Each store's section, by its key (`redis`), as its backend's parser read it (`StackSection`). A stack holds
    /// only the stores it lists; the typed accessors (`stack.redis`) are extensions in each backend's folder.
    public private(set) var sections: [String: any StackSection] = [:]
    /// The section keys in file order.
    public private(set) var sectionKeys: [String] = []
    /// Embedded servers started under libfaketime (`faketime:`), so a `clock-skew` fault can move their wall clock.
    /// PostgreSQL servers only: Redis and FalkorDB (jemalloc) recurse inside libfaketime's clock_gettime at start-up,
    /// and ClickHouse and Tansu are statically linked, so LD_PRELOAD cannot reach them.
    public var faketime: [String] = []
    /// `started_by:` (external stacks) — a script of the repository, e.g. `scripts/secure-stack`, that `kiln stack
    /// up` and `down` run as `SCRIPT up|down DIR` (DIR: the stack's own state directory); Kiln runs no server of it.
    public var startedBy: String? = nil
    /// `network:` — loopback aliases (default) or hosts in network namespaces (embedded stacks only).
    public var network: Network = .loopback
    /// A `kind: patroni` stack's own file (etcd members, every node's PostgreSQL and REST endpoint), so a run and a
    /// check find the current leader through Patroni's REST API instead of trusting the first node; nil otherwise.
    public var patroni: PatroniStackSpec? = nil
    /// Hosts of Kiln's own load-worker groups in a hosts stack (`client_groups:`), at 10.213.7.201 onwards in order;
    /// a worker thread enters one (HostNetwork.enterForCurrentThread) to open its connections from that address.
    public var clientGroups: [(name: String, address: HostAddress)] = []
    /// Hosts of the reference pipeline's sink processes (`pipeline.workers: processes`) in a hosts stack:
    /// `sink-<sink>` for each of `defaultSinks` in order, at 10.213.7.61 onwards (`sinkHostOctets`). Empty on
    /// loopback and with `sink_hosts: false` (a second hosts stack, e.g. a test's, beside one that has them).
    public var sinkHosts: [(name: String, address: HostAddress)] {
        guard network == .hosts, hasSinkHosts else { return [] }
        return zip(defaultSinks, Self.sinkHostOctets).map { sink, octet in ("sink-\(sink)", try! HostAddress(octet: octet)) }
    }
    /// `sink_hosts:` (hosts stacks; default true).
    public var hasSinkHosts = true
    /// The reference pipeline's sinks, as the backends name them (`BackendVocabulary.defaultSinks`, set by `parse`).
    public var defaultSinks: [String] = []
    /// The host addresses a hosts stack keeps for the reference pipeline's sink processes (.61–.64).
    public static let sinkHostOctets = 61...64
    /// The file this definition was read from, for messages.
    public var source: String

    public static func load(contentsOf url: URL, vocabulary: BackendVocabulary) throws(SpecError) -> StackDefinition {
        try parse(YAMLFields.document(contentsOf: url), vocabulary: vocabulary)
    }

    public static func parse(_ text: String, file: String, vocabulary: BackendVocabulary) throws(SpecError)
        -> StackDefinition
    {
        try parse(YAMLFields.document(text, file: file), vocabulary: vocabulary)
    }

    /// The top-level fields of a stack file that are not a store's section.
    public static let stackFields = [
        "kind", "name", "chaos_target", "faketime", "network", "subnet", "client_groups", "sink_hosts", "started_by",
    ]

    /// Reads a stack from a mapping (a whole stack file, or a `stack:` block inlined in a scenario).
    public static func parse(_ fields: YAMLFields, vocabulary: BackendVocabulary) throws(SpecError) -> StackDefinition {
        if try fields.optionalString("kind") == Kind.patroni.rawValue {
            return try patroni(PatroniStackSpec.parse(fields), vocabulary: vocabulary)
        }
        let kind: Kind = try fields.enumeration("kind")
        let name = try fields.optionalString("name") ?? kind.rawValue
        let chaosTarget = try fields.bool("chaos_target", default: kind != .external)
        let startedBy = try fields.optionalString("started_by")
        if startedBy != nil, kind != .external {
            throw fields.error("started_by", "only an external stack names the script that starts it (Kiln starts an embedded stack's servers itself)")
        }

        // Every key that is neither a stack field nor a known section, named before anything else is read.
        let sectionKeys = vocabulary.stackSections.map(\.key)
        for key in fields.keys where !stackFields.contains(key) && !sectionKeys.contains(key) {
            let (line, column) = fields.location(key)
            throw SpecError(
                file: fields.file, line: line, column: column, field: key,
                message: "unknown section (stores: \(sectionKeys.joined(separator: ", ")); stack fields: "
                    + "\(stackFields.joined(separator: ", ")))")
        }
        var definition = StackDefinition(name: name, kind: kind, chaosTarget: chaosTarget, source: fields.file)
        definition.defaultSinks = vocabulary.defaultSinks
        var sectionFields: [String: YAMLFields] = [:]
        let context = StackSectionContext(kind: kind)
        // File order, so a hosts stack names the first holder of an address as the file does.
        for key in fields.keys where sectionKeys.contains(key) {
            let parser = vocabulary.stackSections.first { $0.key == key }!
            let section = try fields.mapping(key)
            definition.setSection(key, try parser.parse(section, context))
            sectionFields[key] = section
        }
        guard !definition.sectionKeys.isEmpty else {
            throw fields.error(
                "kind", "a stack lists at least one store (sections: \(sectionKeys.joined(separator: ", ")))")
        }

        var faketime: [String] = []
        if fields.contains("faketime") {
            let allowed = definition.sectionKeys.flatMap { definition.sections[$0]!.faketimeServers }
            for (text, line, column) in try fields.strings("faketime") {
                guard kind == .embedded else {
                    throw SpecError(
                        file: fields.file, line: line, column: column, field: "faketime",
                        message: "only an embedded stack starts its servers; start a \(kind.rawValue) stack's processes under faketime yourself")
                }
                guard allowed.contains(text) else {
                    throw SpecError(
                        file: fields.file, line: line, column: column, field: "faketime",
                        message: "'\(text)' cannot run under libfaketime (servers that can: \(allowed.joined(separator: ", "))); "
                            + "Redis and FalkorDB recurse inside libfaketime at start-up, ClickHouse and Tansu are statically linked")
                }
                faketime.append(text)
            }
        }

        let network: Network = try fields.enumeration("network", default: .loopback)
        var clientGroups: [(name: String, address: HostAddress)] = []
        var hasSinkHosts = true
        if network == .hosts {
            hasSinkHosts = try fields.bool("sink_hosts", default: true)
            clientGroups = try parseHosts(
                sinkHosts: hasSinkHosts, fields, kind: kind, name: name, definition: definition,
                sectionFields: sectionFields)
        } else {
            for key in ["subnet", "client_groups", "sink_hosts"] where fields.contains(key) {
                let (line, column) = fields.location(key)
                throw SpecError(
                    file: fields.file, line: line, column: column, field: key,
                    message: "only a `network: hosts` stack has \(key)")
            }
        }

        try fields.finish()
        definition.faketime = faketime
        definition.startedBy = startedBy
        definition.network = network
        definition.clientGroups = clientGroups
        definition.hasSinkHosts = hasSinkHosts
        return definition
    }

    /// A Patroni stack file as a stack: its nodes become the `postgres:` section (read by the PostgreSQL backend's own
    /// parser, from the vocabulary), its client groups stay, and it has no sink hosts. The file was validated by
    /// `PatroniStackSpec`.
    static func patroni(_ spec: PatroniStackSpec, vocabulary: BackendVocabulary) throws(SpecError) -> StackDefinition {
        guard let parser = vocabulary.stackSections.first(where: { $0.key == "postgres" }) else {
            throw SpecError(
                file: spec.source, line: 1, column: 1, field: "kind",
                message: "a Patroni stack needs the PostgreSQL backend's `postgres:` section, which this build lacks")
        }
        let section = """
            primary: \(spec.nodes[0])
            replicas: [\(spec.nodes.dropFirst().map(\.description).joined(separator: ", "))]
            database: \(spec.database)
            user: \(spec.user)
            """
        var definition = StackDefinition(
            name: spec.name, kind: .patroni, chaosTarget: spec.chaosTarget, source: spec.source)
        definition.setSection(
            "postgres",
            try parser.parse(YAMLFields.document(section, file: spec.source), StackSectionContext(kind: .patroni)))
        definition.network = .hosts
        definition.clientGroups = spec.clientGroups
        definition.hasSinkHosts = false
        definition.patroni = spec
        return definition
    }

    /// The rules of a `network: hosts` stack: embedded, subnet 10.213.7.0/24 (the only one), a name that can tag its
    /// namespaces, each server on its own host address .2–.254 of that subnet (not .1: Kiln's client host), at most 9
    /// client groups. Returns the client groups with their addresses.
    private static func parseHosts(
        sinkHosts: Bool, _ fields: YAMLFields, kind: Kind, name: String, definition: StackDefinition,
        sectionFields: [String: YAMLFields]
    ) throws(SpecError) -> [(name: String, address: HostAddress)] {
        func fail(_ key: String, _ message: String, in section: YAMLFields? = nil) -> SpecError {
            let section = section ?? fields
            let (line, column) = section.location(key)
            return SpecError(
                file: fields.file, line: line, column: column, field: section.fieldPath(key), message: message)
        }
        guard kind == .embedded else {
            throw fail(
                "network", "only an embedded stack runs its servers in Kiln's hosts; a \(kind.rawValue) stack cannot")
        }
        if let subnet = try fields.optionalString("subnet"), subnet != HostAddress.subnet {
            throw fail("subnet", "\(subnet.debugDescription): Kiln's hosts live on \(HostAddress.subnet) only")
        }
        guard isHostName(name) else {
            throw fail("name", "a hosts stack's name tags its namespaces: a-z, 0-9 and -, at most 40 characters")
        }
        var holders: [String: String] = [:]
        for sectionName in definition.sectionKeys {
            let section = sectionFields[sectionName]!
            for (key, address) in definition.sections[sectionName]!.addresses.map({ ($0.field, $0.address) }) {
                guard HostAddress(address.host) != nil else {
                    throw fail(
                        key,
                        "\(address.host) is not a host address of \(HostAddress.subnet) (.2–.254): every server "
                            + "of a hosts stack has its own address there", in: section)
                }
                if let holder = holders[address.host] {
                    throw fail(key, "\(address.host) is also \(holder)'s: each server needs its own host", in: section)
                }
                holders[address.host] = "\(sectionName).\(key)"
            }
        }
        for octet in sinkHosts ? Array(sinkHostOctets) : [] {
            if let holder = holders["\(HostAddress.prefix)\(octet)"] {
                let parts = holder.split(separator: ".")
                throw fail(
                    String(parts[1]), "\(HostAddress.prefix)\(octet) is a pipeline sink's host (.61–.64)",
                    in: sectionFields[String(parts[0])])
            }
        }
        var groups: [(name: String, address: HostAddress)] = []
        if fields.contains("client_groups") {
            let names = try fields.strings("client_groups")
            for (index, (text, line, column)) in names.enumerated() {
                func error(_ message: String) -> SpecError {
                    SpecError(
                        file: fields.file, line: line, column: column, field: "client_groups[\(index)]",
                        message: message)
                }
                guard index < 9 else { throw error("at most 9 client groups (10.213.7.201–.209)") }
                guard isHostName(text) else {
                    throw error("\(text.debugDescription): a-z, 0-9 and -, at most 40 characters")
                }
                guard !groups.contains(where: { $0.name == text }) else { throw error("\(text) is listed twice") }
                let address = try! HostAddress(octet: 201 + index)
                if let holder = holders[address.description] {
                    throw error("\(address) is also \(holder)'s (client groups take .201–.209)")
                }
                groups.append((text, address))
            }
        }
        return groups
    }

    /// A name that can be part of a namespace name: a-z, 0-9 and -, 1–40 characters.
    public static func isHostName(_ name: String) -> Bool {
        !name.isEmpty && name.count <= 40
            && name.allSatisfy { ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "-" }
    }
}

extension StackDefinition {
    public init(name: String, kind: Kind, chaosTarget: Bool, source: String) {
        self.name = name
        self.kind = kind
        self.chaosTarget = chaosTarget
        self.source = source
    }

    /// The section under `key`, when the stack lists that store.
    public func section(_ key: String) -> (any StackSection)? { sections[key] }

    /// The typed section of a backend, when the stack lists it.
    public func section<Section: StackSection>(_ type: Section.Type) -> Section? {
        sections.values.lazy.compactMap { $0 as? Section }.first
    }

    /// Whether the stack lists the store with section `key`.
    public func has(_ key: String) -> Bool { sections[key] != nil }

    /// Sets (or replaces) a section; a new key goes last.
    public mutating func setSection(_ key: String, _ section: any StackSection) {
        if sections.updateValue(section, forKey: key) == nil { sectionKeys.append(key) }
    }

    /// Every server address of every section, in file order, with its dotted field (`redis.replicas`).
    public var addresses: [(field: String, address: HostPort)] {
        sectionKeys.flatMap { key in sections[key]!.addresses.map { ("\(key).\($0.field)", $0.address) } }
    }

    /// Resolves a `*_env` field against the environment; nil when the field is unset or the variable is empty.
    public static func secret(_ variable: String?, in environment: [String: String]) -> String? {
        guard let variable, let value = environment[variable], !value.isEmpty else { return nil }
        return value
    }
}
