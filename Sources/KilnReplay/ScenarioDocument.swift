import Foundation
import KilnScenario
import Yams

/// A scenario file as a YAML tree that replay and shrink rewrite: where its stack and dataset spec are, its rows,
/// faults, phase durations, rates and mixes. Comments and layout are not kept (the rewritten file is Kiln's own);
/// every value it does not touch is written back as it was, and `kiln run` parses the result as strictly as any
/// scenario.
public struct ScenarioDocument {
    public private(set) var root: Node

    public init(yaml: String, file: String) throws(BundleError) {
        let node: Node?
        do {
            node = try Yams.compose(yaml: yaml)
        } catch {
            throw BundleError(file: file, message: "not a YAML scenario: \(error)")
        }
        guard let node, node.mapping != nil else {
            throw BundleError(file: file, message: "not a YAML mapping (a scenario starts with `name:`, `dataset:` …)")
        }
        root = node
    }

    public init(contentsOf url: URL) throws(BundleError) {
        let text: String
        do {
            text = try String(contentsOf: url, encoding: .utf8)
        } catch {
            throw BundleError(file: url.path, message: "cannot read: \(error.localizedDescription)")
        }
        try self.init(yaml: text, file: url.path)
    }

    public func yaml() throws -> String { try Yams.serialize(node: root) }

    public func write(to url: URL) throws { try yaml().write(to: url, atomically: true, encoding: .utf8) }

    // MARK: stack and dataset

    /// The `stack:` value when it is a path (nil when absent or an inline mapping).
    public var stackPath: String? { root["stack"]?.string }
    public var stackIsInline: Bool { root["stack"]?.mapping != nil }
    public mutating func setStack(_ path: String) { root["stack"] = Node(path) }

    public mutating func setSpec(_ path: String) {
        var dataset = root["dataset"] ?? Node([(Node, Node)]())
        dataset["spec"] = Node(path)
        root["dataset"] = dataset
    }

    public mutating func setRows(_ rows: Int64) {
        var dataset = root["dataset"] ?? Node([(Node, Node)]())
        dataset["rows"] = Node(String(rows))
        root["dataset"] = dataset
    }

    public mutating func setFresh(_ fresh: Bool) { root["fresh"] = Node(fresh ? "true" : "false") }

    public mutating func setName(_ name: String) { root["name"] = Node(name) }

    // MARK: faults

    public var faults: [Node] { root["faults"]?.sequence.map(Array.init) ?? [] }

    public mutating func setFaults(_ faults: [Node]) {
        if faults.isEmpty {
            guard case .mapping(var mapping) = root else { return }
            mapping = Node.Mapping(mapping.filter { $0.key.string != "faults" })
            root = .mapping(mapping)
        } else {
            root["faults"] = Node(faults)
        }
    }

    /// Each `times:` repeat of each fault entry as an entry of its own, at the start the schedule planned for it
    /// (jitter already drawn from the seed, `every`/`times`/`jitter` removed): the fault events delta debugging
    /// removes one by one, each keeping its time whatever else is removed. `spec` is this document's parsed
    /// `faults:` (its entries in the file's order).
    public mutating func pinFaultEvents(_ spec: FaultScheduleSpec, seed: UInt64) {
        let entries = faults
        guard entries.count == spec.entries.count else { return }
        var pinned: [Node] = []
        for instance in spec.plan(seed: seed) {
            guard let index = spec.entries.firstIndex(of: instance.entry), case .mapping(let mapping) = entries[index]
            else { continue }
            let dropped: Set<String> = ["every", "times", "jitter", "at", "name"]
            var node = Node.mapping(Node.Mapping(mapping.filter { !dropped.contains($0.key.string ?? "") }))
            node["name"] = Node(instance.entry.times > 1 ? "\(instance.entry.name)-\(instance.number)" : instance.entry.name)
            node["at"] = Node("\(Self.milliseconds(instance.start))ms")
            pinned.append(node)
        }
        setFaults(pinned)
    }

    static func milliseconds(_ duration: Duration) -> Int64 {
        duration.components.seconds * 1000 + duration.components.attoseconds / 1_000_000_000_000_000
    }

    // MARK: phases

    public var phaseCount: Int { root["phases"]?.sequence?.count ?? 0 }

    public func phase(_ index: Int) -> Node? { root["phases"]?.sequence.flatMap { index < $0.count ? $0[index] : nil } }

    public mutating func setPhase(_ index: Int, _ node: Node) {
        guard var phases = root["phases"]?.sequence.map(Array.init), index < phases.count else { return }
        phases[index] = node
        root["phases"] = Node(phases)
    }

    public mutating func keepPhases(named names: Set<String>) {
        guard let phases = root["phases"]?.sequence.map(Array.init) else { return }
        root["phases"] = Node(phases.filter { names.contains($0["name"]?.string ?? "") })
    }
}
