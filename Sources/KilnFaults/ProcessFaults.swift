import Foundation
import KilnCore
import KilnStack

#if canImport(Glibc)
    import Glibc
#endif

/// Where a server process lives and how to signal and start it. Implementations: `LocalProcessController`
/// (processes on this machine: a command line Kiln starts, or a server of the embedded stack);
/// `DockerComposeController` builds the equivalent docker commands. Calls block the calling thread.
public protocol ProcessController: AnyObject {
    /// The server's name, e.g. `redis-primary`.
    var name: String { get }
    /// The address it serves, used by the probes.
    var endpoint: HostPort { get }
    /// The running process's pid, nil when it is not running.
    func currentPID() -> pid_t?
    /// Sends `signal` to the running process; throws when none runs.
    func send(_ signal: Int32) throws
    /// Starts the server when it is not running (a no-op otherwise) and returns once it answers or `timeout` passed.
    func start(timeout: Duration) throws
}

/// How a fault checks that a server answers.
public enum ServiceProbe: Sendable {
    /// A TCP connect. Cannot tell a paused process (its kernel still accepts connections).
    case connect
    /// `PING` to a Redis-protocol server.
    case redisPing
    /// Any request whose reply starts with at least one byte.
    case request([UInt8])

    func run(_ endpoint: HostPort, timeout: Duration) -> TCPProbe.Result {
        switch self {
        case .connect: TCPProbe.connect(to: endpoint, timeout: timeout)
        case .redisPing: TCPProbe.redisPing(endpoint, timeout: timeout)
        case .request(let payload): TCPProbe.request(to: endpoint, payload: payload, timeout: timeout)
        }
    }

    var isRequest: Bool {
        if case .connect = self { return false }
        return true
    }
}

public struct ProcessFaultError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// A local server process. Either a command line this controller starts itself (tests, pipeline workers) or a
/// named server of the embedded stack, whose pid and restart go through `EmbeddedStack` (restart = `up`, which
/// starts only servers that are not running). Not thread-safe: one caller at a time (the fault driver).
public final class LocalProcessController: ProcessController {
    public enum Launch {
        /// Started with `LocalProcess.spawnDetached(executable, arguments, log:)`.
        case command(executable: String, arguments: [String], log: URL)
        /// Server `name` of this embedded stack.
        case embedded(EmbeddedStack)
    }

    public let name: String
    public let endpoint: HostPort
    public let launch: Launch
    private var pid: pid_t?
    private let readyProbe: ServiceProbe

    public init(name: String, endpoint: HostPort, launch: Launch, readyProbe: ServiceProbe = .connect) {
        self.name = name
        self.endpoint = endpoint
        self.launch = launch
        self.readyProbe = readyProbe
    }

    /// Targets server `name` of a running embedded stack. Throws when the stack has no server of that name.
    public static func embedded(_ name: String, of stack: EmbeddedStack) throws -> LocalProcessController {
        guard let server = stack.servers.first(where: { $0.name == name }) else {
            throw ProcessFaultError(
                "the embedded stack has no server \(name) (servers: \(stack.servers.map(\.name).joined(separator: ", ")))"
            )
        }
        return LocalProcessController(name: name, endpoint: server.endpoint, launch: .embedded(stack))
    }

    public func currentPID() -> pid_t? {
        switch launch {
        case .command:
            guard let pid else { return nil }
            // Our own child: reap it once it exited, so no zombie is left behind.
            var status: Int32 = 0
            if waitpid(pid, &status, WNOHANG) == pid || !LocalProcess.isAlive(pid) {
                self.pid = nil
                return nil
            }
            return pid
        case .embedded(let stack):
            return stack.status().first { $0.name == name }?.pid
        }
    }

    public func send(_ signal: Int32) throws {
        guard let pid = currentPID() else { throw ProcessFaultError("\(name) is not running") }
        guard kill(pid, signal) == 0 else {
            throw ProcessFaultError("kill(\(pid), \(signal)) failed: \(String(cString: strerror(errno)))")
        }
    }

    public func start(timeout: Duration) throws {
        if currentPID() == nil {
            switch launch {
            case .command(let executable, let arguments, let log):
                pid = try LocalProcess.spawnDetached(executable, arguments, log: log)
            case .embedded(let stack):
                try stack.up(readyTimeout: timeout)
            }
        }
        let (result, _) = TCPProbe.waitFor(answered: true, within: timeout) {
            readyProbe.run(endpoint, timeout: .milliseconds(500))
        }
        guard result.answered else {
            throw ProcessFaultError("\(name) did not answer at \(endpoint) within \(timeout)")
        }
    }

    /// SIGCONTs (in case it is paused) and terminates a process this controller started (tests' cleanup).
    /// Embedded servers are left to `kiln stack down`.
    public func shutdown() {
        guard case .command = launch, let pid = currentPID() else { return }
        kill(pid, SIGCONT)
        LocalProcess.terminate(pid, grace: .seconds(5))
        self.pid = nil
    }
}

/// Kill (SIGKILL, restart on stop), pause (SIGSTOP, SIGCONT on stop) or graceful restart (SIGTERM and wait for
/// exit, start again on stop) of one server. Evidence: the process's state (gone / stopped `T` in /proc) and the
/// probe (refused or no reply while active; answered after stop, by a new pid for kill and restart).
public final class ProcessFault: Fault {
    public enum Action: String, Sendable {
        case kill
        case pause
        case restart
    }

    public let name: String
    public let action: Action
    public let controller: any ProcessController
    public let probe: ServiceProbe
    /// How long `stop` waits for the server to answer again, and `start` for it to exit.
    public let recoveryTimeout: Duration
    private var faultedPID: pid_t?
    private var healedEvidence: String?

    public var kind: String { action.rawValue }
    public var target: String { "\(controller.name) (\(controller.endpoint))" }

    public init(
        name: String? = nil, action: Action, controller: any ProcessController, probe: ServiceProbe = .connect,
        recoveryTimeout: Duration = .seconds(30)
    ) {
        self.name = name ?? "\(action.rawValue)-\(controller.name)"
        self.action = action
        self.controller = controller
        self.probe = probe
        self.recoveryTimeout = recoveryTimeout
    }

    public func start() throws {
        guard let pid = controller.currentPID() else { throw ProcessFaultError("\(controller.name) is not running") }
        faultedPID = pid
        switch action {
        case .kill:
            try controller.send(SIGKILL)
            guard LocalProcess.waitForExit(pid, within: .seconds(5)) else {
                throw ProcessFaultError("pid \(pid) still alive 5 s after SIGKILL")
            }
        case .pause:
            try controller.send(SIGSTOP)
        case .restart:
            try controller.send(SIGTERM)
            guard LocalProcess.waitForExit(pid, within: recoveryTimeout) else {
                throw ProcessFaultError("pid \(pid) still alive \(recoveryTimeout) after SIGTERM")
            }
        }
    }

    public func stop() throws {
        switch action {
        case .kill, .restart:
            try controller.start(timeout: recoveryTimeout)
        case .pause:
            guard let pid = faultedPID, kill(pid, SIGCONT) == 0 else {
                throw ProcessFaultError("SIGCONT failed: \(String(cString: strerror(errno)))")
            }
        }
    }

    public func verify(_ phase: FaultPhase) -> FaultEvidence {
        let endpoint = controller.endpoint
        guard let pid = faultedPID else { return .unknown("no pid was faulted") }
        switch phase {
        case .active:
            let result = probe.run(endpoint, timeout: .milliseconds(300))
            switch action {
            case .kill, .restart:
                if LocalProcess.isAlive(pid) { return .no("pid \(pid) is still alive") }
                return result.answered
                    ? .no("pid \(pid) is gone but \(endpoint) still answers")
                    : .yes("pid \(pid) gone; \(endpoint): \(describe(result))")
            case .pause:
                // Signal delivery is asynchronous: give the kernel up to 1 s to show the stop.
                let stopped = Self.waitForState(pid, within: .seconds(1)) { $0 == "T" }
                guard stopped else { return .no("pid \(pid) is not stopped (state \(Self.processState(pid) ?? "?"))") }
                guard probe.isRequest else {
                    return .unknown(
                        "pid \(pid) is stopped (state T); a connect probe cannot show that it stopped answering")
                }
                return result.answered
                    ? .no("pid \(pid) is stopped but \(endpoint) answered")
                    : .yes("pid \(pid) stopped (state T); \(endpoint): \(describe(result))")
            }
        case .healed:
            let (result, elapsed) = TCPProbe.waitFor(answered: true, within: recoveryTimeout) {
                probe.run(endpoint, timeout: .milliseconds(500))
            }
            guard result.answered else { return .no("\(endpoint) not answering after \(recoveryTimeout)") }
            let now = controller.currentPID()
            let answeredText = "\(endpoint) answered after \(elapsed.milliseconds) ms"
            switch action {
            case .kill, .restart:
                guard let now, now != pid else { return .no("\(answeredText) but no new pid (old \(pid))") }
                return .yes("\(answeredText), new pid \(now)")
            case .pause:
                _ = Self.waitForState(pid, within: .seconds(1)) { $0 != "T" }
                let state = Self.processState(pid) ?? "?"
                return state == "T"
                    ? .no("pid \(pid) still stopped") : .yes("\(answeredText), pid \(pid) state \(state)")
            }
        }
    }

    public func teardown() {
        // A paused process must never stay paused: SIGCONT is harmless on a running one.
        if action == .pause, let pid = faultedPID { kill(pid, SIGCONT) }
        // A server this fault stopped is started again; one that was down before is left alone.
        if action != .pause, faultedPID != nil, controller.currentPID() == nil {
            try? controller.start(timeout: recoveryTimeout)
        }
    }

    private func describe(_ result: TCPProbe.Result) -> String {
        switch result {
        case .answered: "answered"
        case .refused(let reason): "refused (\(reason))"
        case .timedOut: "no answer within 300 ms"
        }
    }

    static func waitForState(_ pid: pid_t, within limit: Duration, _ accept: (Character?) -> Bool) -> Bool {
        let deadline = ContinuousClock.now + limit
        while !accept(processState(pid)) {
            if ContinuousClock.now >= deadline { return false }
            usleep(10_000)
        }
        return true
    }

    /// The state letter of /proc/PID/stat (R, S, T, Z...), nil when the process is gone.
    public static func processState(_ pid: pid_t) -> Character? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")"), stat.index(close, offsetBy: 2) < stat.endIndex
        else { return nil }
        return stat[stat.index(close, offsetBy: 2)]
    }
}
