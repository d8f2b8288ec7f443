import Foundation
import KilnBackend
import KilnCore
import KilnScenario
import KilnStores

/// One server process of the embedded stack, as its backend describes it (`EmbeddedServerDescription`, from
/// `Backend.stack.servers`): its name and role, the address it binds, and where its data and log live in the run
/// directory.
public struct EmbeddedServer: Sendable {
    /// The role a backend gives the server (`ServerRole.redisPrimary`…, defined in each backend's folder).
    public typealias Kind = ServerRole

    public var name: String { description.name }
    public var kind: Kind { description.role }
    public var endpoint: HostPort { description.endpoint }
    /// The protocol its clients speak (fault probes, client witnesses).
    public var wire: WireProtocol { description.wire }
    /// Data, config and sockets of this server; removed by `down`.
    public var directory: URL
    /// Kept after `down` so a failed start can be read.
    public var log: URL
    /// What the backend said about the server (launch, probe, start order).
    public let description: EmbeddedServerDescription

    /// The servers of `definition` from `backends` (default: every backend), in start order: each backend's in
    /// registry order, and servers that start after another (replicas) last.
    public static func catalogue(
        _ definition: StackDefinition, runDirectory: URL, tools: URL, libraries: URL,
        backends: [Backend] = Backends.all
    ) -> [EmbeddedServer] {
        let paths = EmbeddedPaths(
            runDirectory: runDirectory, tools: tools, libraries: libraries, network: definition.network)
        let described = backends.flatMap { $0.stack.servers(definition, paths) }
        let ordered = described.filter(\.startsAfter.isEmpty) + described.filter { !$0.startsAfter.isEmpty }
        return ordered.map { server in
            EmbeddedServer(directory: paths.directory(of: server.name), log: paths.log(of: server.name), description: server)
        }
    }

    /// The PostgreSQL data directory (PGDATA) of a postgres server.
    public var postgresData: URL { directory.appendingPathComponent("data") }

    /// A PostgreSQL server (primary or standby by the stack file; a failover may have swapped them).
    public var isPostgres: Bool { description.launch.isPostgres }
}
