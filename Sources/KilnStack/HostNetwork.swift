import CProcessSpawn
import Foundation
import KilnCore
import Logging

#if canImport(Glibc)
    import Glibc
#endif

/// Who created a host, encoded in its namespace's name so that a sweep can tell whose it is.
public enum HostOwner: Hashable, Sendable, CustomStringConvertible {
    /// A hosts-mode stack (`kiln stack up`), by its stack file's `name`: removed by that stack's `down` only.
    case stack(String)
    /// A process (a test, a run's client groups), by pid and start time (clock ticks since boot, so that a recycled
    /// pid is a different owner): its hosts are swept once that process is gone.
    case process(pid: pid_t, startTicks: UInt64)

    /// The calling process.
    public static var currentProcess: HostOwner {
        let pid = getpid()
        return .process(pid: pid, startTicks: Self.startTicks(of: pid) ?? 0)
    }

    /// `s-NAME` or `pPID-TICKS`: no dots, so a namespace name `kiln.TAG.HOST` splits exactly.
    public var tag: String {
        switch self {
        case .stack(let name): "s-\(name)"
        case .process(let pid, let ticks): "p\(pid)-\(ticks)"
        }
    }

    public init?(tag: Substring) {
        if tag.hasPrefix("s-") {
            let name = String(tag.dropFirst(2))
            guard HostNetwork.isValidName(name) else { return nil }
            self = .stack(name)
        } else if tag.hasPrefix("p") {
            let parts = tag.dropFirst().split(separator: "-")
            guard parts.count == 2, let pid = pid_t(parts[0]), let ticks = UInt64(parts[1]) else { return nil }
            self = .process(pid: pid, startTicks: ticks)
        } else {
            return nil
        }
    }

    /// A stack is always alive (only its `down` removes its hosts); a process while it runs with the same start time.
    public var isAlive: Bool {
        switch self {
        case .stack: true
        case .process(let pid, let ticks): LocalProcess.isAlive(pid) && Self.startTicks(of: pid) == ticks
        }
    }

    public var description: String {
        switch self {
        case .stack(let name): "stack \(name)"
        case .process(let pid, _): "process \(pid)"
        }
    }

    /// Field 22 of /proc/PID/stat.
    public static func startTicks(of pid: pid_t) -> UInt64? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        // fields[0] is the state (field 3), so field 22 is fields[19].
        return fields.count > 19 ? UInt64(fields[19]) : nil
    }
}

/// One host: a network namespace `kiln.TAG.NAME` whose `eth0` holds `address`/24, joined to the bridge by the veth
/// `kiln-v<octet>` in the root namespace. Its only route is the connected /24.
public struct NetworkHost: Hashable, Sendable, CustomStringConvertible {
    /// The interface inside the namespace.
    public static let interface = "eth0"

    public var name: String
    public var address: HostAddress
    public var owner: HostOwner

    public init(name: String, address: HostAddress, owner: HostOwner) {
        self.name = name
        self.address = address
        self.owner = owner
    }

    public var namespace: String { "kiln.\(owner.tag).\(name)" }
    /// The veth end on the bridge (root namespace); at most 15 characters.
    public var bridgePort: String { "kiln-v\(address.octet)" }
    /// The namespace file `setns` opens.
    public var namespaceFile: String { "/run/netns/\(namespace)" }
    public var description: String { "\(name) (\(address), namespace \(namespace))" }
}

/// Kiln's hosts: Linux network namespaces joined by veth pairs to the bridge `kiln-br0`, on 10.213.7.0/24 and
/// nothing else. The bridge holds 10.213.7.1 (Kiln's client host) in the root namespace; hosts get no default route
/// and forwarding is never enabled, so nothing in a host reaches beyond the /24.
///
/// Everything carries a findable name: namespaces `kiln.<owner tag>.<host>`, bridge ports `kiln-v<octet>`, the bridge
/// `kiln-br0`. Mutations take an exclusive file lock (/run/lock/kiln-host-network.lock), so several processes
/// (a stack, tests) may add and remove hosts at once; the bridge is removed only when no port hangs on it.
/// Every call blocks the calling thread (it runs `ip`, `tc`, `iptables`); never call it from a load worker's hot path.
public struct HostNetwork: Sendable {
    public static let bridge = "kiln-br0"
    static let namespacePrefix = "kiln."
    static let portPrefix = "kiln-v"
    static let lockFile = "/run/lock/kiln-host-network.lock"

    private let logger: Logger

    public init(logger: Logger) {
        self.logger = logger
    }

    /// Names of hosts and stacks: lower-case letters, digits and `-`, 1–40 characters.
    public static func isValidName(_ name: String) -> Bool {
        !name.isEmpty && name.count <= 40
            && name.allSatisfy { ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "-" }
    }

    static var ip: String {
        ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"].first {
            FileManager.default.isExecutableFile(atPath: $0)
        }
            ?? "ip"
    }
    static var tc: String {
        ["/usr/sbin/tc", "/sbin/tc", "/usr/bin/tc"].first { FileManager.default.isExecutableFile(atPath: $0) } ?? "tc"
    }
    static var iptables: String {
        ["/usr/sbin/iptables", "/sbin/iptables"].first { FileManager.default.isExecutableFile(atPath: $0) }
            ?? "iptables"
    }

    @discardableResult
    private func ip(_ arguments: [String]) throws(HostNetworkError) -> String {
        do {
            return try LocalProcess.run(Self.ip, arguments)
        } catch {
            throw HostNetworkError("ip \(arguments.joined(separator: " ")): \(error)")
        }
    }

    /// Runs `body` holding the network's lock (flock; released when the process dies).
    private func locked<T>(_ body: () throws(HostNetworkError) -> T) throws(HostNetworkError) -> T {
        mkdir("/run/lock", 0o755)  // absent in some containers; EEXIST otherwise
        let fd = open(Self.lockFile, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw HostNetworkError("cannot open \(Self.lockFile): \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        while flock(fd, LOCK_EX) != 0 {
            guard errno == EINTR else { throw HostNetworkError("cannot lock \(Self.lockFile)") }
        }
        defer { flock(fd, LOCK_UN) }
        return try body()
    }

    // MARK: creating

    /// Creates the bridge with 10.213.7.1/24 and brings it up; does nothing to a bridge that already exists.
    public func ensureBridge() throws(HostNetworkError) {
        try locked { () throws(HostNetworkError) in try ensureBridgeLocked() }
    }

    private func ensureBridgeLocked() throws(HostNetworkError) {
        if !linkExists(Self.bridge) {
            try ip(["link", "add", Self.bridge, "type", "bridge"])
            logger.info("created bridge", metadata: ["kiln.bridge": "\(Self.bridge)"])
        }
        let addresses = (try? ip(["-o", "-4", "addr", "show", "dev", Self.bridge])) ?? ""
        if !addresses.contains(" \(HostAddress.clientHost)/24 ") {
            try ip(["addr", "add", "\(HostAddress.clientHost)/24", "dev", Self.bridge])
        }
        try ip(["link", "set", Self.bridge, "up"])
    }

    /// Creates `host` (namespace, veth pair on the bridge, address, `lo` and `eth0` up), creating the bridge first when
    /// needed. Idempotent for a host that already exists with the same address; throws when another host holds the
    /// address or the name, and removes whatever it created when a step fails.
    @discardableResult
    public func addHost(_ host: NetworkHost) throws(HostNetworkError) -> NetworkHost {
        guard Self.isValidName(host.name) else {
            throw HostNetworkError(
                "host name \(host.name.debugDescription) must be a-z, 0-9 and -, at most 40 characters")
        }
        if case .stack(let stack) = host.owner, !Self.isValidName(stack) {
            throw HostNetworkError("stack name \(stack.debugDescription) must be a-z, 0-9 and -, at most 40 characters")
        }
        return try locked { () throws(HostNetworkError) -> NetworkHost in
            try ensureBridgeLocked()
            let existing = try hostsLocked()
            if let same = existing.first(where: { $0.namespace == host.namespace }) {
                guard same.address == host.address else {
                    throw HostNetworkError("\(same) exists with another address than \(host.address)")
                }
                return same
            }
            if let holder = existing.first(where: { $0.address == host.address }) {
                throw HostNetworkError("\(host.address) is held by \(holder) (owner: \(holder.owner))")
            }
            if linkExists(host.bridgePort) {
                // A port whose namespace is gone (its processes outlived `ip netns del`): a leftover.
                try ip(["link", "del", host.bridgePort])
            }
            do throws(HostNetworkError) {
                try ip(["netns", "add", host.namespace])
                try ip([
                    "link", "add", host.bridgePort, "type", "veth", "peer", "name", NetworkHost.interface, "netns",
                    host.namespace,
                ])
                try ip(["link", "set", host.bridgePort, "master", Self.bridge, "up"])
                try ip(["-n", host.namespace, "addr", "add", "\(host.address)/24", "dev", NetworkHost.interface])
                try ip(["-n", host.namespace, "link", "set", NetworkHost.interface, "up"])
                try ip(["-n", host.namespace, "link", "set", "lo", "up"])
            } catch {
                _ = try? ip(["netns", "del", host.namespace])
                _ = try? ip(["link", "del", host.bridgePort])
                throw error
            }
            logger.debug("added host", metadata: ["kiln.host": "\(host)"])
            return host
        }
    }

    // MARK: inspecting

    /// Every Kiln host that exists now (namespaces named `kiln.TAG.NAME` holding a 10.213.7.x address on `eth0`),
    /// ordered by address. A namespace without such an address is listed by `leftovers()`, not here.
    public func hosts() throws(HostNetworkError) -> [NetworkHost] {
        try hostsLocked()
    }

    private func hostsLocked() throws(HostNetworkError) -> [NetworkHost] {
        try kilnNamespaces().compactMap { namespace -> NetworkHost? in
            guard let (name, owner) = Self.parse(namespace: namespace.name), let address = address(in: namespace.name)
            else { return nil }
            return NetworkHost(name: name, address: address, owner: owner)
        }.sorted { $0.address < $1.address }
    }

    /// The host name and owner a namespace name `kiln.TAG.NAME` encodes; nil for any other name.
    public static func parse(namespace: String) -> (name: String, owner: HostOwner)? {
        let parts = namespace.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0] == "kiln", let owner = HostOwner(tag: parts[1]), isValidName(String(parts[2]))
        else { return nil }
        return (String(parts[2]), owner)
    }

    private struct NamedNamespace: Decodable {
        var name: String
        var id: Int?
    }

    private func kilnNamespaces() throws(HostNetworkError) -> [NamedNamespace] {
        let text = try ip(["-j", "netns", "list"])
        guard !text.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else { return [] }
        guard let all = try? JSONDecoder().decode([NamedNamespace].self, from: Data(text.utf8)) else {
            throw HostNetworkError("cannot read `ip -j netns list`: \(text.prefix(200))")
        }
        return all.filter { $0.name.hasPrefix(Self.namespacePrefix) }
    }

    private func address(in namespace: String) -> HostAddress? {
        guard let text = try? ip(["-n", namespace, "-o", "-4", "addr", "show", "dev", NetworkHost.interface]) else {
            return nil
        }
        for word in text.split(separator: " ") where word.hasPrefix(HostAddress.prefix) {
            if let address = HostAddress(String(word.split(separator: "/")[0])) { return address }
        }
        return nil
    }

    private func linkExists(_ name: String) -> Bool {
        (try? ip(["link", "show", "dev", name])) != nil
    }

    private struct Link: Decodable {
        var ifname: String
        var link_netnsid: Int?
    }

    private func links(_ arguments: [String]) -> [Link] {
        guard let text = try? ip(["-j", "link", "show"] + arguments),
            let links = try? JSONDecoder().decode([Link].self, from: Data(text.utf8))
        else { return [] }
        return links
    }

    /// The processes running in `host`'s namespace (`ip netns pids`).
    public func processes(in host: NetworkHost) -> [pid_t] {
        processes(inNamespace: host.namespace)
    }

    private func processes(inNamespace namespace: String) -> [pid_t] {
        ((try? ip(["netns", "pids", namespace])) ?? "").split(separator: "\n").compactMap { pid_t($0) }
    }

    // MARK: running inside a host

    /// `executable arguments` wrapped in `ip netns exec NAMESPACE`, for `LocalProcess.run`/`spawnDetached`: `ip` execs
    /// the command, so the pid is the command's own. Put `runuser` inside this wrapper, never outside (only root may
    /// enter a namespace).
    public static func command(in host: NetworkHost, _ executable: String, _ arguments: [String]) -> (String, [String])
    {
        (ip, ["netns", "exec", host.namespace, executable] + arguments)
    }

    /// Runs a command inside `host` to completion and returns its output (throws `LocalProcess.Failure` on a non-zero
    /// exit).
    @discardableResult
    public static func run(in host: NetworkHost, _ executable: String, _ arguments: [String]) throws -> String {
        let (wrapped, wrappedArguments) = command(in: host, executable, arguments)
        return try LocalProcess.run(wrapped, wrappedArguments)
    }

    /// Moves the calling OS thread — and only it — into `host`'s network namespace for the rest of its life: every
    /// socket it opens afterwards is opened from `host.address` (sockets opened before keep their namespace). For a
    /// dedicated worker thread (one `Thread` per load worker), never a thread of Swift's cooperative pool or a
    /// dispatch queue, which other work reuses.
    public static func enterForCurrentThread(_ host: NetworkHost) throws(HostNetworkError) {
        let fd = open(host.namespaceFile, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            throw HostNetworkError("cannot open \(host.namespaceFile): \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        let result = kiln_enter_network_namespace(fd)
        guard result == 0 else {
            throw HostNetworkError("setns into \(host.namespace): \(String(cString: strerror(result)))")
        }
    }

    /// Runs `body` on the calling thread inside `host`'s network namespace and moves the thread back afterwards (also
    /// when `body` throws). Throws before `body` runs when the namespace cannot be entered; a failure to move back
    /// is fatal (the thread would otherwise keep serving other work from the host).
    public static func withNamespace<T>(of host: NetworkHost, _ body: () throws -> T) throws -> T {
        let original = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC)
        guard original >= 0 else { throw HostNetworkError("cannot open this thread's network namespace") }
        defer { close(original) }
        try enterForCurrentThread(host)
        defer {
            let result = kiln_enter_network_namespace(original)
            precondition(result == 0, "cannot return the thread to its network namespace: errno \(result)")
        }
        return try body()
    }

    // MARK: removing

    /// Removes `host`: kills every process in its namespace (SIGCONT then SIGKILL, so a paused one dies too), deletes
    /// the namespace (its interfaces, qdiscs and iptables rules go with it) and its bridge port, then the bridge when no
    /// port hangs on it any more. Returns what it removed.
    @discardableResult
    public func removeHost(_ host: NetworkHost) throws(HostNetworkError) -> [String] {
        try locked { () throws(HostNetworkError) -> [String] in
            removeLocked(namespace: host.namespace, port: host.bridgePort) + removeOrphanPortsAndBridgeLocked()
        }
    }

    private func removeLocked(namespace: String, port: String?) -> [String] {
        var removed: [String] = []
        let pids = processes(inNamespace: namespace)
        for pid in pids {
            kill(pid, SIGCONT)
            kill(pid, SIGKILL)
        }
        for pid in pids { _ = LocalProcess.waitForExit(pid, within: .seconds(5)) }
        if !pids.isEmpty {
            removed.append(
                "killed \(pids.count) process(es) in \(namespace): \(pids.map(String.init).joined(separator: " "))")
        }
        if (try? ip(["netns", "del", namespace])) != nil { removed.append("namespace \(namespace)") }
        if let port, linkExists(port), (try? ip(["link", "del", port])) != nil { removed.append("veth \(port)") }
        return removed
    }

    /// Removes `hosts` (as `removeHost` does; absent ones are skipped), then the bridge when no port hangs on it any
    /// more. Returns what it removed.
    @discardableResult
    public func removeHosts(_ hosts: [NetworkHost]) throws(HostNetworkError) -> [String] {
        try locked { () throws(HostNetworkError) -> [String] in
            let existing = Set(try kilnNamespaces().map(\.name))
            var removed: [String] = []
            for host in hosts where existing.contains(host.namespace) {
                removed += removeLocked(namespace: host.namespace, port: host.bridgePort)
            }
            return removed + removeOrphanPortsAndBridgeLocked()
        }
    }

    /// Removes every host of `owner`, then the bridge when no port hangs on it any more. Returns what it removed.
    /// (A process owner covers every host that process made: tests remove their own hosts with `removeHosts(_:)`.)
    @discardableResult
    public func removeHosts(of owner: HostOwner) throws(HostNetworkError) -> [String] {
        try locked { () throws(HostNetworkError) -> [String] in
            var removed: [String] = []
            for namespace in try kilnNamespaces() {
                guard let (name, found) = Self.parse(namespace: namespace.name), found == owner else { continue }
                let port = address(in: namespace.name).map {
                    NetworkHost(name: name, address: $0, owner: owner).bridgePort
                }
                removed += removeLocked(namespace: namespace.name, port: port)
            }
            removed += removeOrphanPortsAndBridgeLocked()
            return removed
        }
    }

    /// Removes what crashed owners left: hosts of processes that are gone, `kiln.*` namespaces that are not
    /// well-formed hosts, bridge ports whose namespace is gone, and the bridge when nothing hangs on it. Never touches
    /// a host of a live process or of a stack. Returns what it removed (empty when nothing was left).
    @discardableResult
    public func sweep() throws(HostNetworkError) -> [String] {
        try locked { () throws(HostNetworkError) -> [String] in
            var removed: [String] = []
            for namespace in try kilnNamespaces() {
                if let (name, owner) = Self.parse(namespace: namespace.name) {
                    guard !owner.isAlive else { continue }
                    let port = address(in: namespace.name).map {
                        NetworkHost(name: name, address: $0, owner: owner).bridgePort
                    }
                    removed += removeLocked(namespace: namespace.name, port: port)
                } else {
                    // `kiln.` but not a host's name: a half-made namespace, or one of a Kiln with another format.
                    removed += removeLocked(namespace: namespace.name, port: nil)
                }
            }
            removed += removeOrphanPortsAndBridgeLocked()
            if !removed.isEmpty { logger.debug("removed leftover hosts", metadata: ["kiln.removed": "\(removed)"]) }
            return removed
        }
    }

    /// Bridge ports whose peer is not in a named namespace (their namespace was deleted while a process held it), then
    /// the bridge when no port is left on it.
    private func removeOrphanPortsAndBridgeLocked() -> [String] {
        var removed: [String] = []
        guard let named = try? Set(allNamespaceIDs()) else { return [] }
        for link in links(["type", "veth"]) where link.ifname.hasPrefix(Self.portPrefix) {
            if let id = link.link_netnsid, named.contains(id) { continue }
            if (try? ip(["link", "del", link.ifname])) != nil { removed.append("veth \(link.ifname)") }
        }
        if linkExists(Self.bridge), links(["master", Self.bridge]).isEmpty {
            if (try? ip(["link", "del", Self.bridge])) != nil { removed.append("bridge \(Self.bridge)") }
        }
        return removed
    }

    private func allNamespaceIDs() throws(HostNetworkError) -> [Int] {
        let text = try ip(["-j", "netns", "list"])
        guard !text.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else { return [] }
        return ((try? JSONDecoder().decode([NamedNamespace].self, from: Data(text.utf8))) ?? []).compactMap(\.id)
    }

    // MARK: faults a crashed run left in live hosts

    /// Undoes faults a killed run may have left on `hosts` (which stay): continues stopped processes in their
    /// namespaces, deletes non-default root and ingress qdiscs on their `eth0` and bridge ports, and flushes
    /// iptables rules inside their namespaces (nothing but Kiln's faults puts rules there). Returns what it did.
    @discardableResult
    public func clearFaults(in hosts: [NetworkHost]) -> [String] {
        var cleared: [String] = []
        for host in hosts {
            let stopped = processes(in: host).filter { LocalProcess.isStopped($0) }
            for pid in stopped { kill(pid, SIGCONT) }
            if !stopped.isEmpty {
                cleared.append("continued \(stopped.count) stopped process(es) in \(host.namespace)")
            }
            cleared += clearQdiscs(device: NetworkHost.interface, namespace: host.namespace)
            cleared += clearQdiscs(device: host.bridgePort, namespace: nil)
            let (ipExec, prefix) = Self.command(in: host, Self.iptables, [])
            for table in ["filter", "mangle", "nat", "raw"] {
                let rules = ((try? LocalProcess.run(ipExec, prefix + ["-w", "5", "-t", table, "-S"])) ?? "")
                    .split(separator: "\n").filter { $0.hasPrefix("-A ") }
                guard !rules.isEmpty else { continue }
                if (try? LocalProcess.run(ipExec, prefix + ["-w", "5", "-t", table, "-F"])) != nil {
                    cleared.append("\(rules.count) iptables rule(s) (\(table)) in \(host.namespace)")
                }
            }
        }
        if !cleared.isEmpty { logger.debug("removed leftover faults", metadata: ["kiln.removed": "\(cleared)"]) }
        return cleared
    }

    private struct Qdisc: Decodable {
        var kind: String
        var handle: String?
        var root: Bool?
    }

    private func clearQdiscs(device: String, namespace: String?) -> [String] {
        let scope = namespace.map { ["-n", $0] } ?? []
        guard let text = try? LocalProcess.run(Self.tc, scope + ["-j", "qdisc", "show", "dev", device]),
            let qdiscs = try? JSONDecoder().decode([Qdisc].self, from: Data(text.utf8))
        else { return [] }
        var cleared: [String] = []
        let where_ = namespace.map { "\(device) in \($0)" } ?? device
        for qdisc in qdiscs {
            if qdisc.kind == "ingress" || qdisc.kind == "clsact" {
                if (try? LocalProcess.run(Self.tc, scope + ["qdisc", "del", "dev", device, qdisc.kind])) != nil {
                    cleared.append("qdisc \(qdisc.kind) on \(where_)")
                }
            } else if qdisc.root == true, !["noqueue", "noop", "pfifo_fast", "mq", "fq_codel"].contains(qdisc.kind) {
                if (try? LocalProcess.run(Self.tc, scope + ["qdisc", "del", "dev", device, "root"])) != nil {
                    cleared.append("qdisc \(qdisc.kind) on \(where_)")
                }
            }
        }
        return cleared
    }
}
