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
    @discardableResult
    public static func run(_ executable: String, _ arguments: [String], user: String? = nil) throws -> String {
        var executable = executable
        var arguments = arguments
        if let user, geteuid() == 0 {
            arguments = ["-u", user, "--", executable] + arguments
            executable = "/usr/sbin/runuser"
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let output = String(decoding: data, as: UTF8.self)
        guard process.terminationStatus == 0 else {
            let name = (arguments.first { !$0.hasPrefix("-") && $0 != user && $0 != "--" } ?? executable)
            throw Failure(
                command: URL(fileURLWithPath: name).lastPathComponent, status: process.terminationStatus,
                output: output)
        }
        return output
    }

    /// Starts `executable` in its own session (so a terminal's Ctrl-C does not reach it), with stdin from
    /// /dev/null and stdout/stderr appended to `log`, and returns its pid without waiting for it.
    /// The process outlives Kiln; `terminate` stops it.
    public static func spawnDetached(_ executable: String, _ arguments: [String], log: URL) throws -> pid_t {
        // A background job of a non-interactive shell is not a process-group leader, so setsid(1) calls
        // setsid() and execs in place: `$!` is the server's own pid.
        let script = #"log="$1"; shift; setsid "$@" >>"$log" 2>&1 </dev/null & echo $!"#
        let output = try run("/bin/sh", ["-c", script, "sh", log.path, executable] + arguments)
        guard let pid = pid_t(output.trimmingCharacters(in: .whitespacesAndNewlines)) else {
            throw Failure(command: executable, status: -1, output: "could not read the pid: \(output)")
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
        let milliseconds = Int32(timeout.components.seconds * 1000 + timeout.components.attoseconds / 1_000_000_000_000_000)
        guard poll(&poller, 1, milliseconds) == 1 else { return false }
        var error: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length)
        return error == 0
    }
}
