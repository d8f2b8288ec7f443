import KilnBackend
import KilnScenario

/// Neo4j over its HTTP query API: the same Cypher as FalkorDB. It cannot run on this machine, so its client is tested
/// for encoding only and it declares no places.
public enum Neo4jBackend {
    public static let descriptor = Backend(driver: StoreDriver(Neo4jHTTPClient.self) { try Neo4jHTTPClient(context: $0) },
        stack: BackendStack(
            sectionKey: GraphStackConfig.key,
            environment: { stack, _ in
                guard let graph = stack.section(GraphStackConfig.self), graph.kind == .neo4j else { return [] }
                return [("KILN_NEO4J_URL", "http://\(graph.endpoint)")]
            }),
        // `graph:` may name FalkorDB instead: then the stack serves no Neo4j.
        endpoint: { $0.section(GraphStackConfig.self).flatMap { $0.kind == .neo4j ? $0.endpoint : nil } })
}
