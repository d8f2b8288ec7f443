import Foundation
import KilnBackend
import KilnCore
import KilnRedis
import KilnScenario

extension ServerRole {
    public static let falkordb = ServerRole("falkordb")
}

/// FalkorDB contributes the `graph:` section (shared with Neo4j, `GraphStackConfig`) and runs the embedded graph
/// server when `kind: falkordb`.
enum FalkorDBStackSide {
    static func embeddedServers(_ stack: StackDefinition, _ paths: EmbeddedPaths) -> [EmbeddedServerDescription] {
        guard let graph = stack.section(GraphStackConfig.self), graph.kind == .falkordb else { return [] }
        let program = paths.tools.appendingPathComponent("falkordb-server").path
        let module = paths.libraries.appendingPathComponent("falkordb.so").path
        return [
            EmbeddedServerDescription(
                name: "falkordb", role: .falkordb, endpoint: graph.endpoint, wire: .resp,
                launch: .process(program: program) { directory in
                    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
                    return RedisStackConfig.serverArguments(graph.endpoint, directory: directory) + ["--loadmodule", module]
                },
                requires: [("FalkorDB", program), ("FalkorDB module", module)],
                probe: { endpoint, timeout in
                    let connection = try RedisConnection(
                        host: endpoint.host, port: endpoint.port, timeoutSeconds: Double(timeout))
                    _ = try connection.command(["GRAPH.QUERY", "kiln-health", "RETURN 1"])
                    return "graph"
                })
        ]
    }

    static let stack = BackendStack(
        section: GraphStackConfig.parser, servers: embeddedServers,
        proxy: ProxiedEndpoint(
            wire: .resp, endpoint: { $0.section(GraphStackConfig.self)?.endpoint },
            redirect: { stack, proxy in stack.graph.endpoint = proxy }),
        environment: { stack, _ in
            guard let graph = stack.section(GraphStackConfig.self), graph.kind == .falkordb else { return [] }
            return [("KILN_FALKORDB_URL", "redis://\(graph.endpoint)")]
        })
}
