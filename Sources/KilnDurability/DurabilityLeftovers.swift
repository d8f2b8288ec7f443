import Foundation
import KilnStack

#if canImport(Glibc)
    import Glibc
#endif

/// Removes what a killed or interrupted durability drill left: every process whose command line names a drill work
/// directory (`/tmp/durability-<drill>-<pid>`) gets SIGKILL, and the directory goes. Only directories whose
/// owning Kiln process (`<pid>`) is gone are swept by `sweepAbandoned`; `sweep(_:)` is the interrupt path of the
/// running drill itself.
public enum DurabilityLeftovers {
    /// SIGKILLs every process whose command line contains `directory`'s path or one of `addresses` (`host:port`:
    /// redis-server rewrites its title to `redis-server HOST:PORT`, dropping its `--dir`), then removes the
    /// directory. Returns the pids killed.
    @discardableResult
    public static func sweep(_ directory: URL, addresses: [String] = []) -> [pid_t] {
        let path = directory.path
        var matched: [pid_t] = []
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        for entry in entries {
            guard let pid = pid_t(entry), pid != getpid(), let command = LocalProcess.commandLine(pid),
                command.contains(path + "/") || command.hasSuffix(path)
                    || addresses.contains(where: { command.contains($0) })
            else { continue }
            matched.append(pid)
        }
        // A PostgreSQL server's backends and auxiliary processes have rewritten titles that name neither: take each
        // matched process's tree (before anything dies and is reparented), stop all of it, then kill all of it.
        var killed: [pid_t] = []
        for pid in matched { killed += ProcessTree.stop(root: pid, settle: .milliseconds(500)) }
        for pid in killed { kill(pid, SIGKILL) }
        let deadline = ContinuousClock.now + .seconds(5)
        while killed.contains(where: LocalProcess.isAlive) && ContinuousClock.now < deadline { usleep(20_000) }
        // The drill's own thread may be removing the same tree at the same time (its servers died under it): a
        // recursive removal stops at the first file the other one took, so repeat until the directory is gone.
        for _ in 0..<20 where FileManager.default.fileExists(atPath: path) {
            try? FileManager.default.removeItem(at: directory)
            usleep(50_000)
        }
        return killed
    }

    /// Sweeps `/tmp/durability-<name>-<pid>` directories of drill `name` whose Kiln process is gone.
    public static func sweepAbandoned(name: String, addresses: [String]) -> [String] {
        let prefix = "durability-\(name)-"
        var swept: [String] = []
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/tmp")) ?? [] where entry.hasPrefix(prefix) {
            guard let pid = pid_t(entry.dropFirst(prefix.count)), pid != getpid(), !LocalProcess.isAlive(pid) else { continue }
            let killed = sweep(URL(fileURLWithPath: "/tmp/\(entry)"), addresses: addresses)
            swept.append("/tmp/\(entry)" + (killed.isEmpty ? "" : " (killed \(killed.count) process(es))"))
        }
        return swept
    }
}
