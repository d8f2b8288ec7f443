import Foundation
import KilnCore
import KilnBackend
import KilnScenario
import KilnStores

#if canImport(Glibc)
    import Glibc
#endif

/// An external stack started by its own script (`started_by:`, e.g. `scripts/secure-stack` for the hardened stack):
/// the script's directory and the servers it recorded there. The script writes `servers.json` at `up`: each server,
/// named as the stack file's backends name it (`postgres-primary`, `redis-primary`, `sentinel-1`…), maps to the pid
/// file in the directory that holds its running process. Kiln's faults act on those pids — and only after
/// `listeningPID(_:)` proved the pid serves the server's address — and start a killed server again by running the
/// script's `up` (which starts only the servers that are not running).
public struct ScriptedStack: Sendable {
    public static let serversFile = "servers.json"

    public struct Server: Sendable {
        public var name: String
        /// The role its backend gives it (`.postgresPrimary`, `.sentinel`, `.falkordb`…).
        public var role: ServerRole
        public var endpoint: HostPort
        public var wire: WireProtocol
        /// Where the script keeps the process's pid; nil when `servers.json` does not name one.
        public var pidFile: URL?
        /// Where the process itself listens when that is not `endpoint`: a server the script runs in a network
        /// namespace of its own behind a front (Tansu in `kiln-secure-kafka` behind stunnel and the SCRAM gateway).
        /// nil: the process holds `endpoint`'s listening socket in this process's namespace.
        public var listener: NamespacedListener? = nil
        /// The unix socket the process itself listens on when a front holds `endpoint` (FalkorDB behind stunnel):
        /// `servers.json`'s `{"pid": "falkordb.pid", "listens_unix": "falkordb-socket/falkordb.sock"}`, a path
        /// inside the script's directory. nil: as `listener` says.
        public var unixSocket: URL? = nil
    }

    /// A listening address inside a named network namespace (`ip netns`, /run/netns/NAME), as `servers.json` gives it:
    /// `{"pid": "kafka.pid", "listens": "127.0.0.1:9092", "netns": "kiln-secure-kafka"}`.
    public struct NamespacedListener: Sendable, Equatable {
        public var endpoint: HostPort
        public var namespace: String
        public init(endpoint: HostPort, namespace: String) {
            self.endpoint = endpoint
            self.namespace = namespace
        }
    }

    /// One value of `servers.json`: a pid file name, or an object naming it and where the process listens.
    struct Entry: Decodable {
        var pid: String
        var listener: NamespacedListener?
        /// Relative to the script's directory; never absolute, never with a `..` component.
        var unixSocket: String?

        private enum Keys: String, CodingKey { case pid, listens, netns, listensUnix = "listens_unix" }

        init(from decoder: any Decoder) throws {
            if let name = try? decoder.singleValueContainer().decode(String.self) {
                pid = name
                return
            }
            let object = try decoder.container(keyedBy: Keys.self)
            pid = try object.decode(String.self, forKey: .pid)
            if let path = try object.decodeIfPresent(String.self, forKey: .listensUnix) {
                guard !path.isEmpty, !path.hasPrefix("/"), !path.split(separator: "/").contains(".."),
                    !object.contains(.listens), !object.contains(.netns)
                else {
                    throw DecodingError.dataCorruptedError(
                        forKey: .listensUnix, in: object,
                        debugDescription: "a path inside the stack's directory, without listens/netns: \(path)")
                }
                unixSocket = path
            }
            let listens = try object.decodeIfPresent(String.self, forKey: .listens)
            let netns = try object.decodeIfPresent(String.self, forKey: .netns)
            switch (listens, netns) {
            case (nil, nil): listener = nil
            case (let listens?, let netns?):
                guard let endpoint = HostPort(parsing: listens) else {
                    throw DecodingError.dataCorruptedError(forKey: .listens, in: object, debugDescription: "not HOST:PORT: \(listens)")
                }
                guard !netns.isEmpty, !netns.contains("/"), !netns.hasPrefix(".") else {
                    throw DecodingError.dataCorruptedError(forKey: .netns, in: object, debugDescription: "not a namespace name: \(netns)")
                }
                listener = NamespacedListener(endpoint: endpoint, namespace: netns)
            default:
                throw DecodingError.dataCorruptedError(
                    forKey: .listens, in: object, debugDescription: "listens and netns go together")
            }
        }
    }

    public let definition: StackDefinition
    /// The script's directory (`SCRIPT up DIR`).
    public let directory: URL
    /// Every server the stack file lists, in the backends' order.
    public let servers: [Server]

    /// The directory a scripted stack uses: `runDirectory` (`--run-directory`), else `KILN_STACK_DIR`, else
    /// `.kiln/stack-<name>` under `home` (what `kiln stack up --stack FILE` gives the script).
    public static func directory(
        _ definition: StackDefinition, runDirectory: String?, environment: [String: String], home: URL
    ) -> URL {
        runDirectory.map { URL(fileURLWithPath: $0) }
            ?? environment["KILN_STACK_DIR"].map { URL(fileURLWithPath: $0) }
            ?? home.appendingPathComponent(".kiln/stack-\(definition.name)")
    }

    /// Reads `directory/servers.json`. Throws (the reason, for an exit-69 message) when the stack is not scripted or
    /// the file is missing or unreadable: the script did not start a stack there.
    public init(_ definition: StackDefinition, directory: URL) throws {
        guard definition.kind == .external, definition.startedBy != nil else {
            throw ScriptedStackError("stack \(definition.name) is not started by a script (started_by:)")
        }
        self.definition = definition
        self.directory = directory
        let file = directory.appendingPathComponent(Self.serversFile)
        let entries: [String: Entry]
        do {
            entries = try JSONDecoder().decode([String: Entry].self, from: Data(contentsOf: file))
        } catch {
            throw ScriptedStackError(
                "\(file.path) cannot be read (\(error)): no stack started by \(definition.startedBy!) in \(directory.path); "
                    + "start it (kiln stack up --stack \(definition.source) --run-directory DIR) and give the same DIR "
                    + "as KILN_STACK_DIR")
        }
        let root = URL(fileURLWithPath: "/")
        let paths = EmbeddedPaths(runDirectory: root, tools: root, libraries: root, network: definition.network)
        servers = Backends.all.flatMap { $0.stack.servers(definition, paths) }.map { described in
            Server(
                name: described.name, role: described.role, endpoint: described.endpoint, wire: described.wire,
                pidFile: entries[described.name].flatMap { entry in
                    // Only a plain file name inside the directory.
                    entry.pid.contains("/") || entry.pid.hasPrefix(".") ? nil : directory.appendingPathComponent(entry.pid)
                },
                listener: entries[described.name]?.listener,
                unixSocket: entries[described.name]?.unixSocket.map { directory.appendingPathComponent($0) })
        }
    }

    /// The servers the stack file lists, with no pid file (no stack is read from disk): what `kiln validate` checks
    /// a scenario's fault targets against. `directory` is "." (nothing may act on it).
    public init(planning definition: StackDefinition) {
        self.definition = definition
        directory = URL(fileURLWithPath: ".")
        let root = URL(fileURLWithPath: "/")
        let paths = EmbeddedPaths(runDirectory: root, tools: root, libraries: root, network: definition.network)
        servers = Backends.all.flatMap { $0.stack.servers(definition, paths) }.map { described in
            Server(name: described.name, role: described.role, endpoint: described.endpoint, wire: described.wire, pidFile: nil)
        }
    }

    public func server(named name: String) -> Server? { servers.first { $0.name == name } }

    /// The pid in `server`'s pid file when that process (or a process of its tree) holds the listening socket of
    /// the server's address; nil when the file is missing, the process is gone, or it does not serve that address
    /// (a stale pid file whose pid was reused). Works on a stopped process too (its socket stays open).
    ///
    /// For a server with a `listener` (a process in a network namespace of its own, behind a front that holds
    /// `endpoint`): the pid must be in that namespace (its /proc/PID/ns/net is /run/netns/NAME) and hold a LISTEN
    /// socket on the listener's address there (/proc/PID/net/tcp lists the sockets of the pid's namespace).
    public static func listeningPID(_ server: Server) -> pid_t? {
        guard let file = server.pidFile,
            let text = try? String(contentsOf: file, encoding: .utf8),
            let pid = pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines)), pid > 0,
            LocalProcess.isAlive(pid)
        else { return nil }
        if let socket = server.unixSocket {
            let inodes = ListeningSockets.inodes(listeningOnUnixSocket: socket.path)
            guard !inodes.isEmpty else { return nil }
            return ProcessTree.members(of: pid).contains { ListeningSockets.process($0, holdsAnyOf: inodes) } ? pid : nil
        }
        if let listener = server.listener {
            guard ListeningSockets.process(pid, isInNamespace: listener.namespace) else { return nil }
            let inodes = ListeningSockets.inodes(listeningOn: listener.endpoint, table: "/proc/\(pid)/net/tcp")
            guard !inodes.isEmpty else { return nil }
            return ProcessTree.members(of: pid).contains { ListeningSockets.process($0, holdsAnyOf: inodes) } ? pid : nil
        }
        let inodes = ListeningSockets.inodes(listeningOn: server.endpoint)
        guard !inodes.isEmpty else { return nil }
        return ProcessTree.members(of: pid).contains { ListeningSockets.process($0, holdsAnyOf: inodes) } ? pid : nil
    }
}

public struct ScriptedStackError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// Listening TCP sockets of this network namespace, from /proc/net/tcp, and which process holds one.
public enum ListeningSockets {
    /// The inodes of the IPv4 sockets in state LISTEN bound to `endpoint` (or to 0.0.0.0 on its port), from `table`
    /// (default: this process's namespace; `/proc/PID/net/tcp`: the namespace of PID).
    public static func inodes(listeningOn endpoint: HostPort, table path: String = "/proc/net/tcp") -> Set<String> {
        guard let table = readProcFile(path), let address = hexAddress(endpoint.host) else { return [] }
        let port = String(format: "%04X", endpoint.port)
        var found: Set<String> = []
        for line in table.split(separator: "\n").dropFirst() {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count > 9, fields[3] == "0A" else { continue }
            let local = fields[1].split(separator: ":")
            guard local.count == 2, local[1] == port, local[0] == address || local[0] == "00000000" else { continue }
            found.insert(String(fields[9]))
        }
        return found
    }

    /// Whether `pid`'s network namespace is the named one of `ip netns` (/run/netns/NAME: same device and inode as
    /// /proc/PID/ns/net). False when either cannot be read.
    public static func process(_ pid: pid_t, isInNamespace name: String) -> Bool {
        var own = stat()
        var named = stat()
        guard stat("/proc/\(pid)/ns/net", &own) == 0, stat("/run/netns/\(name)", &named) == 0 else { return false }
        return own.st_dev == named.st_dev && own.st_ino == named.st_ino
    }

    /// The inodes of the unix stream sockets listening on `path` (/proc/net/unix: flag __SO_ACCEPTCON 00010000,
    /// state 01; the last column is the bound path). A socket file that no process listens on gives none.
    public static func inodes(listeningOnUnixSocket path: String, table tablePath: String = "/proc/net/unix") -> Set<String> {
        guard let table = readProcFile(tablePath) else { return [] }
        var found: Set<String> = []
        for line in table.split(separator: "\n").dropFirst() {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count >= 8, fields[3] == "00010000", fields[5] == "01", fields[7...].joined(separator: " ") == path
            else { continue }
            found.insert(String(fields[6]))
        }
        return found
    }

    /// Whether `pid` has an open descriptor on one of the socket `inodes`.
    public static func process(_ pid: pid_t, holdsAnyOf inodes: Set<String>) -> Bool {
        let directory = "/proc/\(pid)/fd"
        guard let descriptors = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return false }
        for descriptor in descriptors {
            guard let target = try? FileManager.default.destinationOfSymbolicLink(atPath: "\(directory)/\(descriptor)"),
                target.hasPrefix("socket:[")
            else { continue }
            if inodes.contains(String(target.dropFirst("socket:[".count).dropLast())) { return true }
        }
        return false
    }

    /// The whole of a /proc file. Foundation's `String(contentsOfFile:)` stops after the first read of a file whose
    /// size reads 0 (one page: /proc/net/tcp's first ~27 sockets), so this reads until end of file.
    static func readProcFile(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = read(fd, &buffer, buffer.count)
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { return count == 0 ? String(decoding: bytes, as: UTF8.self) : nil }
            bytes += buffer[0..<count]
        }
    }

    /// /proc/net/tcp's form of an IPv4 address: the four bytes in host (little-endian) order, in hex.
    static func hexAddress(_ host: String) -> String? {
        let parts = host.split(separator: ".").compactMap { UInt8($0) }
        guard parts.count == 4 else { return nil }
        return parts.reversed().map { String(format: "%02X", $0) }.joined()
    }
}
