import KilnScenario

/// Connection settings of a stack as shell variables (`kiln stack env`). Passwords are never printed: the
/// variable named by a stack's `password_env` is referenced instead.
public enum StackEnvironment {
    public static func variables(_ stack: StackDefinition, paths: KilnPaths) -> [(name: String, value: String)] {
        let pg = stack.postgres
        let redis = stack.redis
        var variables: [(String, String)] = [
            ("KILN_STACK_FILE", stack.source),
            ("PGHOST", pg.primary.host), ("PGPORT", String(pg.primary.port)), ("PGUSER", pg.user),
            ("PGDATABASE", pg.database),
            ("KILN_POSTGRES_URL", "postgresql://\(pg.user)@\(pg.primary)/\(pg.database)"),
        ]
        if let replica = pg.replicas.first {
            variables.append(("KILN_POSTGRES_REPLICA_URL", "postgresql://\(pg.user)@\(replica)/\(pg.database)"))
        }
        variables.append(("KILN_REDIS_URL", "redis://\(redis.primary)"))
        if !redis.sentinels.isEmpty {
            variables.append(("KILN_REDIS_SENTINELS", redis.sentinels.map(\.description).joined(separator: ",")))
            variables.append(("KILN_REDIS_MASTER_NAME", redis.masterName))
        }
        variables.append(("KILN_KAFKA_BOOTSTRAP", stack.kafka.bootstrapServers))
        switch stack.graph.kind {
        case .falkordb: variables.append(("KILN_FALKORDB_URL", "redis://\(stack.graph.endpoint)"))
        case .neo4j: variables.append(("KILN_NEO4J_URL", "http://\(stack.graph.endpoint)"))
        }
        switch stack.timeseries.kind {
        case .clickhouse:
            variables.append(("KILN_CLICKHOUSE_URL", "http://\(stack.timeseries.endpoint)"))
            if stack.kind == .embedded {
                let native = stack.timeseries.endpoint
                variables.append(("KILN_CLICKHOUSE_NATIVE", "\(native.host):\(native.port + 1)"))
            }
        case .timescale:
            variables.append(("KILN_TIMESCALE_URL", "postgresql://\(stack.timeseries.endpoint)/\(stack.timeseries.database)"))
        }
        // kcat and other librdkafka tools need the 2.x library against the Tansu broker.
        if stack.kind == .embedded { variables.append(("KILN_LIBRDKAFKA_DIR", paths.libraries.path)) }
        return variables
    }

    /// `export NAME='value'` lines, single-quoted for any POSIX shell.
    public static func exports(_ stack: StackDefinition, paths: KilnPaths) -> String {
        variables(stack, paths: paths).map { "export \($0.name)='\($0.value.replacingOccurrences(of: "'", with: "'\\''"))'" }
            .joined(separator: "\n")
    }
}
