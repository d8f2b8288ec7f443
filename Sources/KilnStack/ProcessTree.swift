import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A server's processes as /proc shows them: its main process and every descendant (PostgreSQL's backends and
/// auxiliary processes, a Redis fork child). Reads /proc on each call; pids are never cached across calls.
public enum ProcessTree {
    /// Every descendant of `root` (children, grandchildren, …) in one scan of /proc, parents before children.
    public static func descendants(of root: pid_t) -> [pid_t] {
        var children: [pid_t: [pid_t]] = [:]
        for (pid, parent) in parentLinks() { children[parent, default: []].append(pid) }
        var found: [pid_t] = []
        var queue = children[root] ?? []
        var seen: Set<pid_t> = [root]
        while !queue.isEmpty {
            let pid = queue.removeFirst()
            guard seen.insert(pid).inserted else { continue }
            found.append(pid)
            queue += children[pid] ?? []
        }
        return found
    }

    /// `root` and its descendants.
    public static func members(of root: pid_t) -> [pid_t] { [root] + descendants(of: root) }

    /// SIGSTOPs `root` first (a stopped parent cannot fork more), then its descendants, re-scanning /proc until a
    /// scan finds no process that was not stopped yet and every stopped one shows state `T` (at most `settle`).
    /// Returns the stopped pids, root first. A process that exits meanwhile is simply gone from later scans.
    public static func stop(root: pid_t, settle: Duration = .seconds(2)) -> [pid_t] {
        var stopped: [pid_t] = [root]
        var seen: Set<pid_t> = [root]
        kill(root, SIGSTOP)
        let deadline = ContinuousClock.now + settle
        while true {
            let new = descendants(of: root).filter { !seen.contains($0) }
            for pid in new {
                kill(pid, SIGSTOP)
                seen.insert(pid)
                stopped.append(pid)
            }
            let settled = stopped.allSatisfy(isHeld)
            if new.isEmpty && settled { return stopped }
            if ContinuousClock.now >= deadline { return stopped }
            usleep(2_000)
        }
    }

    /// SIGCONTs `pids` and every process of `root`'s tree as it is now, so nothing of the server stays stopped
    /// (SIGCONT is harmless on a running process).
    public static func resume(_ pids: [pid_t], root: pid_t?) {
        for pid in pids { kill(pid, SIGCONT) }
        guard let root, LocalProcess.isAlive(root) else { return }
        let known = Set(pids)
        for pid in members(of: root) where !known.contains(pid) { kill(pid, SIGCONT) }
    }

    /// The state letter of /proc/PID/stat (R, S, T, Z…), nil when the process is gone.
    public static func state(of pid: pid_t) -> Character? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")"), stat.index(close, offsetBy: 2) < stat.endIndex
        else { return nil }
        return stat[stat.index(close, offsetBy: 2)]
    }

    /// True when `pid` cannot run: stopped (`T`, `t`), a zombie whose stopped parent has not reaped it yet, or gone.
    public static func isHeld(_ pid: pid_t) -> Bool {
        guard let state = state(of: pid) else { return true }
        return state == "T" || state == "t" || state == "Z" || state == "X"
    }

    /// True while `pid` exists and is not a zombie.
    public static func isRunning(_ pid: pid_t) -> Bool {
        guard let state = state(of: pid) else { return false }
        return state != "Z" && state != "X"
    }

    /// (pid, parent pid) of every process in /proc.
    static func parentLinks() -> [(pid: pid_t, parent: pid_t)] {
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return [] }
        return entries.compactMap { entry -> (pid_t, pid_t)? in
            guard let pid = pid_t(entry),
                let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
                let close = stat.lastIndex(of: ")")
            else { return nil }
            // After "comm)": " state ppid …".
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            guard fields.count > 1, let parent = pid_t(fields[1]) else { return nil }
            return (pid, parent)
        }
    }
}
