import Foundation
import KilnCore
import KilnScenario
import KilnStores

#if canImport(Glibc)
    import Glibc
#endif

/// One listening TCP socket of this host, from /proc/net/tcp or /proc/net/tcp6.
struct ListeningSocket: Equatable {
    var address: String
    var port: Int
    var inode: String

    var isWildcard: Bool { address == "0.0.0.0" || address == "::" }
    var endpointText: String { address.contains(":") ? "[\(address)]:\(port)" : "\(address):\(port)" }

    /// The LISTEN sockets (state 0A) of /proc/net/tcp and /proc/net/tcp6 of this process's network namespace.
    static func all(procRoot: String = "/proc") -> [ListeningSocket] {
        ["net/tcp", "net/tcp6"].flatMap { file -> [ListeningSocket] in
            // Read to EOF: String(contentsOfFile:) stops after the first 4 KiB of a /proc file (its size is 0).
            guard let handle = FileHandle(forReadingAtPath: "\(procRoot)/\(file)") else { return [] }
            defer { try? handle.close() }
            let text = String(decoding: handle.readDataToEndOfFile(), as: UTF8.self)
            return text.split(separator: "\n").dropFirst().compactMap { parse(String($0)) }
        }
    }

    /// One line of /proc/net/tcp{,6}: `sl local rem st … uid timeout inode`; nil unless it is a listener.
    static func parse(_ line: String) -> ListeningSocket? {
        let fields = line.split(separator: " ", omittingEmptySubsequences: true)
        guard fields.count > 9, fields[3] == "0A" else { return nil }
        let local = fields[1].split(separator: ":")
        guard local.count == 2, let port = Int(local[1], radix: 16) else { return nil }
        let hex = Array(local[0])
        var address: String
        if hex.count == 8 {
            // Four bytes in host (little-endian) order.
            let bytes = stride(from: 0, to: 8, by: 2).compactMap { UInt8(String(hex[$0..<$0 + 2]), radix: 16) }
            guard bytes.count == 4 else { return nil }
            address = bytes.reversed().map(String.init).joined(separator: ".")
        } else if hex.count == 32 {
            // Four 32-bit words, each little-endian.
            var bytes: [UInt8] = []
            for word in 0..<4 {
                let chunk = stride(from: word * 8, to: word * 8 + 8, by: 2).compactMap { UInt8(String(hex[$0..<$0 + 2]), radix: 16) }
                bytes += chunk.reversed()
            }
            guard bytes.count == 16 else { return nil }
            var addr = in6_addr()
            withUnsafeMutableBytes(of: &addr) { $0.copyBytes(from: bytes) }
            var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
            guard inet_ntop(AF_INET6, &addr, &buffer, socklen_t(buffer.count)) != nil else { return nil }
            address = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            if address.hasPrefix("::ffff:") { address = String(address.dropFirst(7)) }
        } else {
            return nil
        }
        return ListeningSocket(address: address, port: port, inode: String(fields[9]))
    }
}

/// `listener.reachable-from-outside`: for every server of the stack, the process that owns its listening socket
/// (found through /proc/PID/fd) and every address that process listens on; a wildcard (0.0.0.0 / ::) or a
/// non-loopback address is reachable from outside this host. A server whose socket is not on this host (or in another
/// network namespace) is not checked.
struct ListenerCheck: AuditCheck {
    var findingIDs: [AuditFindingID] { [.listenerReachableFromOutside] }

    func run(_ context: AuditContext) -> [AuditResult] {
        let listeners = ListeningSocket.all()
        let owners = Self.socketOwners()
        var results: [AuditResult] = []
        for (server, store) in Self.servers(of: context.stack) {
            guard let socket = listeners.first(where: {
                $0.port == server.endpoint.port && ($0.address == server.endpoint.host || $0.isWildcard)
            }) else {
                results.append(AuditResult(.listenerReachableFromOutside, store: store, target: server.label,
                    .notChecked(reason: "no listening socket for \(server.endpoint) in this host's network namespace")))
                continue
            }
            let owner = owners[socket.inode]
            let sockets = owner.map { owner in listeners.filter { owners[$0.inode]?.pid == owner.pid } } ?? [socket]
            let outside = sockets.filter { $0.isWildcard || !isLoopback($0.address) }
            let process = owner.map { "pid \($0.pid) (\($0.name))" } ?? "an unknown process"
            let addresses = sockets.map { $0.endpointText }.sorted().joined(separator: ", ")
            results.append(AuditResult(.listenerReachableFromOutside, store: store, target: server.label,
                outside.isEmpty
                    ? .passed(evidence: "\(process) listens only on loopback: \(addresses)")
                    : .finding(evidence: "\(process) listens on \(outside.map { $0.endpointText }.sorted().joined(separator: ", ")) (all: \(addresses))")))
        }
        return results
    }

    /// Every server of `stack`, from the backends (`Backends.all` order): each backend's servers as it names them
    /// (`BackendStack.servers`, listed whatever the stack's kind: an external stack's servers are checked too), filed
    /// under the backend's name; then, for a backend Kiln runs no server for (Neo4j, TimescaleDB), the endpoint its
    /// clients reach (`Backend.endpoint(in:)`) unless a server above already is that endpoint.
    static func servers(of stack: StackDefinition) -> [(server: AuditServer, store: AuditStore)] {
        // The descriptions are only read for names and endpoints: nothing is started, no path is touched.
        let nowhere = URL(fileURLWithPath: "/nonexistent")
        let paths = EmbeddedPaths(runDirectory: nowhere, tools: nowhere, libraries: nowhere, network: stack.network)
        var servers: [(server: AuditServer, store: AuditStore)] = []
        var serverless: [Backend] = []
        for backend in Backends.all {
            let described = backend.stack.servers(stack, paths)
            if described.isEmpty { serverless.append(backend) }
            servers += described.map { (AuditServer(role: $0.name, endpoint: $0.endpoint), AuditStore(rawValue: backend.name)) }
        }
        for backend in serverless {
            guard let endpoint = backend.endpoint(in: stack), !servers.contains(where: { $0.server.endpoint == endpoint })
            else { continue }
            servers.append((AuditServer(role: backend.name, endpoint: endpoint), AuditStore(rawValue: backend.name)))
        }
        return servers
    }

    /// socket inode → (pid, command name), from the `socket:[inode]` links of /proc/PID/fd.
    static func socketOwners() -> [String: (pid: Int, name: String)] {
        var owners: [String: (pid: Int, name: String)] = [:]
        let manager = FileManager.default
        for entry in (try? manager.contentsOfDirectory(atPath: "/proc")) ?? [] {
            guard let pid = Int(entry) else { continue }
            let name = ((try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8)) ?? "?")
                .trimmingCharacters(in: .whitespacesAndNewlines)
            for fd in (try? manager.contentsOfDirectory(atPath: "/proc/\(pid)/fd")) ?? [] {
                guard let link = try? manager.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/\(fd)"),
                    link.hasPrefix("socket:[")
                else { continue }
                owners[String(link.dropFirst(8).dropLast())] = (pid, name)
            }
        }
        return owners
    }
}

/// `kiln.password-in-run-directory`: every file under each run directory is searched for the value of every password
/// variable of the environment (names containing PASSWORD, PASSWD or SECRET, PGPASSWORD, REDISCLI_AUTH, and each
/// `password_env` of the stack). Evidence names the file, the variable and the byte offset — never the value.
/// Values shorter than 4 bytes would match by chance and are reported as not checked.
struct RunDirectorySecretsCheck: AuditCheck {
    var findingIDs: [AuditFindingID] { [.kilnPasswordInRunDirectory] }
    static let minimumLength = 4

    static func secretVariables(_ context: AuditContext) -> [String] {
        let stack = context.stack
        let named = [
            stack.section(PostgresStackConfig.self)?.passwordEnvironmentVariable,
            stack.section(RedisStackConfig.self)?.passwordEnvironmentVariable,
            stack.section(GraphStackConfig.self)?.passwordEnvironmentVariable,
            stack.section(TimeSeriesStackConfig.self)?.passwordEnvironmentVariable,
        ].compactMap { $0 }
        let pattern = context.environment.keys.filter { name in
            let upper = name.uppercased()
            return upper.contains("PASSWORD") || upper.contains("PASSWD") || upper.contains("SECRET")
                || upper == "REDISCLI_AUTH"
        }
        return Array(Set(named + pattern)).filter { !(context.environment[$0] ?? "").isEmpty }.sorted()
    }

    func run(_ context: AuditContext) -> [AuditResult] {
        let variables = Self.secretVariables(context)
        let short = variables.filter { context.environment[$0]!.utf8.count < Self.minimumLength }
        let secrets = variables.filter { !short.contains($0) }.map { ($0, Array(context.environment[$0]!.utf8)) }
        var results: [AuditResult] = []
        for short in short {
            results.append(AuditResult(.kilnPasswordInRunDirectory, target: "$\(short)",
                .notChecked(reason: "the value of $\(short) is shorter than \(Self.minimumLength) bytes: a search would match by chance")))
        }
        let manager = FileManager.default
        for runs in context.runsDirectories {
            var isDirectory: ObjCBool = false
            guard manager.fileExists(atPath: runs.path, isDirectory: &isDirectory), isDirectory.boolValue else {
                results.append(AuditResult(.kilnPasswordInRunDirectory, target: runs.path,
                    .notApplicable(reason: "\(runs.path) does not exist: no run directories to scan")))
                continue
            }
            guard !secrets.isEmpty else {
                results.append(AuditResult(.kilnPasswordInRunDirectory, target: runs.path,
                    .notApplicable(reason: "the environment holds no password variable to look for")))
                continue
            }
            var files = 0
            var leaks: [String] = []
            var unreadable: [String] = []
            if let walker = manager.enumerator(at: runs, includingPropertiesForKeys: [.isRegularFileKey]) {
                for case let url as URL in walker {
                    guard (try? url.resourceValues(forKeys: [.isRegularFileKey]).isRegularFile) == true else { continue }
                    files += 1
                    let relative = String(url.path.dropFirst(runs.path.count).drop { $0 == "/" })
                    switch Self.search(url, for: secrets) {
                    case .success(let hits):
                        leaks += hits.map { "\(relative) contains the value of $\($0.variable) at byte \($0.offset)" }
                    case .failure:
                        unreadable.append(relative)
                    }
                }
            }
            let scope = "\(files) files under \(runs.path) searched for \(secrets.count) password variable(s) (\(secrets.map { "$" + $0.0 }.joined(separator: ", ")))"
            if !leaks.isEmpty {
                results.append(AuditResult(.kilnPasswordInRunDirectory, target: runs.path,
                    .finding(evidence: leaks.prefix(20).joined(separator: "; ") + (leaks.count > 20 ? "; … \(leaks.count) in all" : "") + "; \(scope)")))
            } else if !unreadable.isEmpty {
                results.append(AuditResult(.kilnPasswordInRunDirectory, target: runs.path,
                    .notChecked(reason: "could not read \(unreadable.prefix(5).joined(separator: ", ")); \(scope)")))
            } else {
                results.append(AuditResult(.kilnPasswordInRunDirectory, target: runs.path, .passed(evidence: "no value found; \(scope)")))
            }
        }
        return results
    }

    struct Hit { var variable: String; var offset: Int }

    /// Streams the file in 1 MiB chunks (overlapping by the longest secret) and returns the first hit per variable.
    static func search(_ url: URL, for secrets: [(String, [UInt8])]) -> Result<[Hit], Error> {
        do {
            let handle = try FileHandle(forReadingFrom: url)
            defer { try? handle.close() }
            let overlap = (secrets.map(\.1.count).max() ?? 1) - 1
            var carry: [UInt8] = []
            var base = 0
            var hits: [String: Int] = [:]
            while true {
                let chunk = try handle.read(upToCount: 1 << 20) ?? Data()
                if chunk.isEmpty { break }
                let window = carry + Array(chunk)
                for (variable, value) in secrets where hits[variable] == nil {
                    if let index = firstIndex(of: value, in: window) { hits[variable] = base + index }
                }
                let keep = min(overlap, window.count)
                base += window.count - keep
                carry = Array(window.suffix(keep))
            }
            return .success(hits.map { Hit(variable: $0.key, offset: $0.value) }.sorted { $0.variable < $1.variable })
        } catch {
            return .failure(error)
        }
    }

    /// The offset of the first occurrence of `needle` in `haystack` (memchr for the first byte, then memcmp: run
    /// directories of big runs hold gigabytes of history).
    static func firstIndex(of needle: [UInt8], in haystack: [UInt8]) -> Int? {
        guard !needle.isEmpty, haystack.count >= needle.count else { return nil }
        return haystack.withUnsafeBytes { hay -> Int? in
            needle.withUnsafeBytes { pattern -> Int? in
                let base = hay.baseAddress!
                let last = hay.count - pattern.count
                var offset = 0
                while offset <= last {
                    guard let hit = memchr(base + offset, Int32(pattern[0]), last - offset + 1) else { return nil }
                    let position = base.distance(to: UnsafeRawPointer(hit))
                    if memcmp(base + position, pattern.baseAddress!, pattern.count) == 0 { return position }
                    offset = position + 1
                }
                return nil
            }
        }
    }
}
