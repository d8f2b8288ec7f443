import CProcessSpawn
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Starting, inspecting and stopping local server processes. All calls block the calling thread; they are
/// meant for the low-rate work of `kiln stack`, never for a load worker.
public enum LocalProcess {
    public struct Failure: Error, CustomStringConvertible {
        public var command: String
        public var status: Int32
        public var output: String
        public var description: String {
            let tail = output.split(separator: "\n").suffix(5).joined(separator: "\n    ")
            return "\(command) exited with status \(status)" + (tail.isEmpty ? "" : ":\n    \(tail)")
        }
    }

    /// Runs a command to completion and returns its combined stdout and stderr. Throws `Failure` on a non-zero
    /// exit. With `user`, runs it through `runuser -u USER --` when Kiln is root (PostgreSQL refuses root).
    /// `environment` (`NAME=value`) is added to the command's environment through `env`, and reaches the daemons it
    /// starts. With `host`, the whole command (runuser included) runs inside that host's network namespace
    /// (`ip netns exec`). Daemons the command leaves behind (pg_ctl's postmaster) do not keep this call waiting.
    @discardableResult
    public static func run(
        _ executable: String, _ arguments: [String], user: String? = nil, environment: [String] = [],
        host: NetworkHost? = nil
    ) throws -> String {
        let name = URL(fileURLWithPath: executable).lastPathComponent
        var executable = executable
        var arguments = arguments
        if !environment.isEmpty {
            arguments = environment + [executable] + arguments
            executable = "/usr/bin/env"
        }
        if let user, geteuid() == 0 {
            arguments = ["-u", user, "--", executable] + arguments
            executable = "/usr/sbin/runuser"
        }
        if let host { (executable, arguments) = HostNetwork.command(in: host, executable, arguments) }
        // Output goes to a file, not a pipe: a daemon the command starts may inherit the descriptor.
        let capture = FileManager.default.temporaryDirectory.appendingPathComponent(
            "kiln-run-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        defer { try? FileManager.default.removeItem(at: capture) }
        let pid = try spawn(executable, arguments, output: capture, newSession: false)
        var status: Int32 = 0
        while waitpid(pid, &status, 0) == -1 && errno == EINTR {}
        let output = (try? String(contentsOf: capture, encoding: .utf8)) ?? ""
        // WIFEXITED / WEXITSTATUS, which Swift does not import.
        let exited = status & 0x7f == 0
        let code = exited ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        guard code == 0 else { throw Failure(command: name, status: code, output: output) }
        return output
    }

    /// Starts `executable` in its own session (so a terminal's Ctrl-C does not reach it), with stdin from
    /// /dev/null and stdout/stderr appended to `log`, and returns its pid without waiting for it.
    /// The process outlives Kiln (it is reparented to init when Kiln exits); `terminate` stops it. With `host`, it runs
    /// inside that host's network namespace (`ip netns exec` execs it: the pid returned is the command's own).
    public static func spawnDetached(
        _ executable: String, _ arguments: [String], log: URL, host: NetworkHost? = nil
    ) throws -> pid_t {
        guard let host else { return try spawn(executable, arguments, output: log, newSession: true) }
        let (wrapped, wrappedArguments) = HostNetwork.command(in: host, executable, arguments)
        return try spawn(wrapped, wrappedArguments, output: log, newSession: true)
    }

    /// Spawns with stdin /dev/null, stdout+stderr appended to `output`, every other descriptor closed.
    private static func spawn(_ executable: String, _ arguments: [String], output: URL, newSession: Bool) throws
        -> pid_t
    {
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        var pid: pid_t = 0
        let result = kiln_spawn(executable, argv, environ, output.path, newSession ? 1 : 0, &pid)
        guard result == 0 else {
            throw Failure(
                command: URL(fileURLWithPath: executable).lastPathComponent, status: -1,
                output: "cannot start: \(String(cString: strerror(result)))")
        }
        return pid
    }

    /// True when `pid` exists and is not a zombie.
    public static func isAlive(_ pid: pid_t) -> Bool {
        guard pid > 0, kill(pid, 0) == 0 || errno == EPERM else { return false }
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return true }
        let state = stat[stat.index(close, offsetBy: 2)]
        return state != "Z" && state != "X"
    }

    /// True when `pid` is stopped (SIGSTOP: state `T` in /proc/PID/stat).
    public static func isStopped(_ pid: pid_t) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return false }
        return stat[stat.index(close, offsetBy: 2)] == "T"
    }

    /// Every process below `pid` (children, their children, …), from one scan of /proc; empty when it has none.
    public static func descendants(of pid: pid_t) -> [pid_t] {
        var children: [pid_t: [pid_t]] = [:]
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        for entry in entries {
            guard let child = pid_t(entry),
                let stat = try? String(contentsOfFile: "/proc/\(entry)/stat", encoding: .utf8),
                let close = stat.lastIndex(of: ")")
            else { continue }
            // After "pid (comm) ": state, then ppid.
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            guard fields.count > 1, let parent = pid_t(fields[1]) else { continue }
            children[parent, default: []].append(child)
        }
        var found: [pid_t] = []
        var queue = children[pid] ?? []
        while let next = queue.popLast() {
            found.append(next)
            queue += children[next] ?? []
        }
        return found
    }

    /// The process's command line (arguments joined by spaces), or nil when it is gone.
    public static func commandLine(_ pid: pid_t) -> String? {
        guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline"), !data.isEmpty else {
            return nil
        }
        return String(decoding: data.map { $0 == 0 ? 0x20 : $0 }, as: UTF8.self)
    }

    /// Sends SIGTERM, waits up to `grace` for the process to exit, then SIGKILLs it. Returns once it is gone
    /// (or after a further 5 s if even SIGKILL did not end it, which returns false).
    @discardableResult
    public static func terminate(_ pid: pid_t, grace: Duration = .seconds(10)) -> Bool {
        guard isAlive(pid) else { return true }
        kill(pid, SIGTERM)
        if waitForExit(pid, within: grace) { return true }
        kill(pid, SIGKILL)
        return waitForExit(pid, within: .seconds(5))
    }

    public static func waitForExit(_ pid: pid_t, within limit: Duration) -> Bool {
        let deadline = ContinuousClock.now + limit
        while isAlive(pid) {
            if ContinuousClock.now >= deadline { return false }
            usleep(50_000)
        }
        return true
    }

    /// True when something accepts a TCP connection at `host:port` within `timeout`.
    public static func isListening(host: String, port: Int, timeout: Duration = .milliseconds(500)) -> Bool {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var result: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, String(port), &hints, &result) == 0, let first = result else { return false }
        defer { freeaddrinfo(result) }
        let fd = socket(first.pointee.ai_family, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        let flags = fcntl(fd, F_GETFL, 0)
        _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
        if connect(fd, first.pointee.ai_addr, first.pointee.ai_addrlen) == 0 { return true }
        guard errno == EINPROGRESS else { return false }
        var poller = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
        let milliseconds = Int32(timeout.wholeMilliseconds)
        guard poll(&poller, 1, milliseconds) == 1 else { return false }
        var error: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length)
        return error == 0
    }
}
