import Foundation
import KilnBackend
import KilnCore
import KilnHTTP
import KilnScenario

#if canImport(Glibc)
    import Glibc
#endif

extension ServerRole {
    public static let clickhouse = ServerRole("clickhouse")
}

/// ClickHouse contributes the `timeseries:` section (shared with TimescaleDB, `TimeSeriesStackConfig`) and runs the
/// embedded server when `kind: clickhouse`.
enum ClickHouseStackSide {
    static func embeddedServers(_ stack: StackDefinition, _ paths: EmbeddedPaths) -> [EmbeddedServerDescription] {
        guard let ts = stack.section(TimeSeriesStackConfig.self), ts.kind == .clickhouse else { return [] }
        let program =
            ["/usr/sbin/clickhouse-server", "/usr/bin/clickhouse-server"].first { FileManager.default.isExecutableFile(atPath: $0) }
            ?? "/usr/sbin/clickhouse-server"
        return [
            EmbeddedServerDescription(
                name: "clickhouse", role: .clickhouse, endpoint: ts.endpoint, wire: .http,
                launch: .process(program: program) { directory in
                    let config = try ClickHouseConfig.write(endpoint: ts.endpoint, directory: directory)
                    return ["--config-file=\(config.path)"]
                },
                requires: [("ClickHouse", program)],
                probe: { endpoint, timeout in
                    let client = try HTTPClient(timeoutSeconds: Double(timeout), connectTimeoutSeconds: 1)
                    let response = try client.get("http://\(endpoint)/?query=SELECT%201").expectOK()
                    guard response.text.trimmingCharacters(in: .whitespacesAndNewlines) == "1" else {
                        throw EmbeddedProbeError("SELECT 1 returned something else")
                    }
                    return "timeseries"
                },
                afterReady: {
                    do {
                        let client = try HTTPClient(timeoutSeconds: 10)
                        _ = try client.post(
                            "http://\(ts.endpoint)/", body: Array("CREATE DATABASE IF NOT EXISTS \(ts.database)".utf8)
                        ).expectOK()
                    } catch {
                        throw EmbeddedProbeError("could not create database: \(error)")
                    }
                })
        ]
    }

    static let stack = BackendStack(
        section: TimeSeriesStackConfig.parser, servers: embeddedServers,
        proxy: ProxiedEndpoint(
            wire: .http, endpoint: { $0.section(TimeSeriesStackConfig.self)?.endpoint },
            redirect: { stack, proxy in stack.timeseries.endpoint = proxy }),
        environment: { stack, _ in
            guard let ts = stack.section(TimeSeriesStackConfig.self), ts.kind == .clickhouse else { return [] }
            var variables = [(name: "KILN_CLICKHOUSE_URL", value: "http://\(ts.endpoint)")]
            if stack.kind == .embedded {
                variables.append(("KILN_CLICKHOUSE_NATIVE", "\(ts.endpoint.host):\(ts.endpoint.port + 1)"))
            }
            return variables
        },
        // 100M rows: the table is 2.9 GB, 3.3 GB with the aggregate (n100m-s17b); parts a merge replaced are deleted
        // after 30 s (`ClickHouseConfig`; with the default 480 s, n100m-s17 held 16 GB at its peak): ~40 B per row.
        diskBytesPerBulkRow: { stack in
            stack.section(TimeSeriesStackConfig.self)?.kind == .clickhouse ? 40 : 0
        })
}

/// ClickHouse 18.16 server configuration for one embedded instance, written from scratch so nothing depends on
/// the Debian package's /etc files or paths.
enum ClickHouseConfig {
    /// Writes config.xml and users.xml into `directory` for a server whose HTTP interface binds `endpoint`; the
    /// native TCP port is the next port, the interserver port the one after. Returns config.xml.
    /// `old_parts_lifetime` 30 s (default 480): parts a merge replaced are deleted within ~30 s. A 100M-row bulk load
    /// otherwise kept 11.5 GB of replaced parts on disk for 8 minutes, while PostgreSQL built its indexes beside it.
    static func write(endpoint: HostPort, directory: URL) throws -> URL {
        let data = directory.appendingPathComponent("data")
        try FileManager.default.createDirectory(at: data, withIntermediateDirectories: true)
        let config = """
            <?xml version="1.0"?>
            <yandex>
                <logger>
                    <level>warning</level>
                    <log>\(directory.path)/server.log</log>
                    <errorlog>\(directory.path)/server.err.log</errorlog>
                    <size>100M</size>
                    <count>2</count>
                </logger>
                <http_port>\(endpoint.port)</http_port>
                <tcp_port>\(endpoint.port + 1)</tcp_port>
                <interserver_http_port>\(endpoint.port + 2)</interserver_http_port>
                <listen_host>\(endpoint.host)</listen_host>
                <path>\(data.path)/</path>
                <tmp_path>\(data.path)/tmp/</tmp_path>
                <user_files_path>\(data.path)/user_files/</user_files_path>
                <format_schema_path>\(data.path)/format_schemas/</format_schema_path>
                <users_config>users.xml</users_config>
                <default_profile>default</default_profile>
                <default_database>default</default_database>
                <mark_cache_size>268435456</mark_cache_size>
                <uncompressed_cache_size>268435456</uncompressed_cache_size>
                <max_concurrent_queries>100</max_concurrent_queries>
                <merge_tree>
                    <old_parts_lifetime>30</old_parts_lifetime>
                </merge_tree>
            </yandex>

            """
        let users = """
            <?xml version="1.0"?>
            <yandex>
                <profiles>
                    <default>
                        <max_memory_usage>4000000000</max_memory_usage>
                        <load_balancing>random</load_balancing>
                    </default>
                </profiles>
                <users>
                    <default>
                        <password></password>
                        <networks><ip>::/0</ip></networks>
                        <profile>default</profile>
                        <quota>default</quota>
                    </default>
                </users>
                <quotas>
                    <default>
                        <interval>
                            <duration>3600</duration>
                            <queries>0</queries>
                            <errors>0</errors>
                            <result_rows>0</result_rows>
                            <read_rows>0</read_rows>
                            <execution_time>0</execution_time>
                        </interval>
                    </default>
                </quotas>
            </yandex>

            """
        let configFile = directory.appendingPathComponent("config.xml")
        try config.write(to: configFile, atomically: true, encoding: .utf8)
        try users.write(to: directory.appendingPathComponent("users.xml"), atomically: true, encoding: .utf8)
        return configFile
    }
}
