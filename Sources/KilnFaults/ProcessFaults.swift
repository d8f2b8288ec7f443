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
    /// SIGSTOPs every process of the server and returns their pids, the running process first. The default
    /// (`ProcessTree.stop`) stops the running process, then its descendants, re-scanning /proc until no new one
    /// appears: PostgreSQL serves each open connection from its own backend, so stopping the postmaster alone
    /// leaves every connected client served.
    /// `root` is the running process's pid (`currentPID()`), looked up by the caller.
    func stopServerProcesses(root: pid_t) -> [pid_t]
    /// The signal that shuts the server down cleanly without waiting for its clients to leave (`restart`):
    /// SIGTERM by default; SIGINT for PostgreSQL, whose SIGTERM ("smart" shutdown) waits until every client has
    /// disconnected — forever under load.
    var gracefulStopSignal: Int32 { get }
}

extension ProcessController {
    public func stopServerProcesses(root: pid_t) -> [pid_t] { ProcessTree.stop(root: root) }
    public var gracefulStopSignal: Int32 { SIGTERM }
}

/// How a fault checks that a server answers.
public enum ServiceProbe: Sendable {
    /// A TCP connect. Cannot tell a paused process (its kernel still accepts connections).
    case connect
    /// `PING` to a Redis-protocol server.
    case redisPing
    /// Any request whose reply starts with at least one byte.
    case request([UInt8])
    /// A new connection that logs in and completes the protocol's witness operation (`ServerProtocol.openWitness`):
    /// what an authenticated client sees. A refused login is `refused`, never `answered`. PostgreSQL's login waits
    /// at least 2 s (libpq's shortest connect timeout), whatever `timeout` says.
    case login(ServerProtocol)

    func run(_ endpoint: HostPort, timeout: Duration) -> TCPProbe.Result {
        switch self {
        case .connect: return TCPProbe.connect(to: endpoint, timeout: timeout)
        case .redisPing: return TCPProbe.redisPing(endpoint, timeout: timeout)
        case .request(let payload): return TCPProbe.request(to: endpoint, payload: payload, timeout: timeout)
        case .login(let spoken):
            let start = ContinuousClock.now
            do {
                try spoken.openWitness(to: endpoint, timeout: timeout).close()
                return .answered
            } catch {
                // A login that ran out its time is a server that did not answer; anything sooner was a refusal.
                let waited = start.duration(to: .now)
                return waited >= timeout * 0.9 ? .timedOut : .refused("\(error)")
            }
        }
    }

    /// " (a new login and <operation> through it)" for a login probe, for evidence text; "" otherwise.
    var through: String {
        if case .login(let spoken) = self { return " (a new login and \(spoken.operation))" }
        return ""
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
    public let gracefulStopSignal: Int32
    private var pid: pid_t?
    private let readyProbe: ServiceProbe

    public init(
        name: String, endpoint: HostPort, launch: Launch, readyProbe: ServiceProbe = .connect,
        gracefulStopSignal: Int32 = SIGTERM
    ) {
        self.name = name
        self.endpoint = endpoint
        self.launch = launch
        self.readyProbe = readyProbe
        self.gracefulStopSignal = gracefulStopSignal
    }

    /// Targets server `name` of a running embedded stack. Throws when the stack has no server of that name.
    public static func embedded(_ name: String, of stack: EmbeddedStack) throws -> LocalProcessController {
        guard let server = stack.servers.first(where: { $0.name == name }) else {
            throw ProcessFaultError(
                "the embedded stack has no server \(name) (servers: \(stack.servers.map(\.name).joined(separator: ", ")))"
            )
        }
        return LocalProcessController(
            name: name, endpoint: server.endpoint, launch: .embedded(stack),
            gracefulStopSignal: server.isPostgres ? SIGINT : SIGTERM)
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
        ProcessTree.resume([pid], root: pid)
        LocalProcess.terminate(pid, grace: .seconds(5))
        self.pid = nil
    }
}

/// Kill (SIGKILL, restart on stop), pause (SIGSTOP, SIGCONT on stop) or graceful restart (`gracefulStopSignal`, wait
/// for every process to exit, start again on stop) of one server, with every process of it
/// (`ProcessController.stopServerProcesses`).
///
/// Evidence is what a client sees. `setup` first opens a witness connection (`witness`, the server's own protocol)
/// and completes one operation on it. Active: `yes` only when the operation on that connection stalls (no reply
/// in 300 ms) or fails AND a new connection's request (`probe`) gets no answer; an old connection that keeps being
/// served makes it `no`, naming what answered. Healed: a new connection answers, and for a pause the witness
/// connection answers again too; after a kill or restart a new pid serves a new witness connection. Without a
/// `witness` a pause or kill cannot be proved: `unknown`.
/// Not thread-safe: driven by one caller (`FaultDriver`); calls block.
public final class ProcessFault: Fault {
    public enum Action: String, Sendable {
        case kill
        case pause
        case restart
    }

    public let name: String
    public let action: Action
    public let controller: any ProcessController
    /// A new connection's request.
    public let probe: ServiceProbe
    /// The protocol of the connection opened before the fault; nil: none (verification is then `unknown`).
    public let witness: ServerProtocol?
    /// How long `stop` waits for the server to answer again, and `start` for it to exit.
    public let recoveryTimeout: Duration
    /// How long an operation may take before it counts as stalled.
    public static let stallTimeout: Duration = .milliseconds(300)
    private var faultedPID: pid_t?
    /// Every process the fault signalled, the running one first.
    private var faultedProcesses: [pid_t] = []
    private var witnessConnection: (any ClientWitness)?
    private var signalledAt: ContinuousClock.Instant?
    /// When the first signal was sent. The record's `started_at`/`stopped_at` (taken around `start` and `stop`)
    /// only bound the fault; these give its exact window.
    public private(set) var signalled: Date?
    /// (pause) When the last process of the server was stopped: from here on no process of it runs.
    public private(set) var allStopped: Date?
    /// (pause) When every stopped process was sent SIGCONT.
    public private(set) var resumed: Date?
    /// Time from the fault's signal to its client-side evidence (set by `verify(.active)` when it says `yes`).
    public private(set) var timeToEvidence: Duration?

    public var kind: String { action.rawValue }
    public var target: String { "\(controller.name) (\(controller.endpoint))" }

    public init(
        name: String? = nil, action: Action, controller: any ProcessController, probe: ServiceProbe = .connect,
        witness: ServerProtocol? = nil, recoveryTimeout: Duration = .seconds(30)
    ) {
        self.name = name ?? "\(action.rawValue)-\(controller.name)"
        self.action = action
        self.controller = controller
        self.probe = probe
        self.witness = witness
        self.recoveryTimeout = recoveryTimeout
    }

    /// Same as `init(probe:witness:)` with the new-connection probe of `witness`'s protocol.
    public convenience init(
        name: String? = nil, action: Action, controller: any ProcessController, speaking witness: ServerProtocol,
        recoveryTimeout: Duration = .seconds(30)
    ) {
        self.init(
            name: name, action: action, controller: controller, probe: witness.newConnectionProbe, witness: witness,
            recoveryTimeout: recoveryTimeout)
    }

    /// Opens the witness connection and completes one operation on it: the fault's start is measured from after it.
    public func setup() throws {
        guard let witness, witnessConnection == nil else { return }
        witnessConnection = try witness.openWitness(to: controller.endpoint, timeout: .seconds(5))
    }

    public func start() throws {
        guard let pid = controller.currentPID() else { throw ProcessFaultError("\(controller.name) is not running") }
        if let witness, witnessConnection == nil {
            witnessConnection = try witness.openWitness(to: controller.endpoint, timeout: .seconds(5))
        }
        faultedPID = pid
        signalledAt = .now
        signalled = Date()
        switch action {
        case .kill:
            // Stopped first, so no process forks or respawns a child between the scan and the kill.
            faultedProcesses = controller.stopServerProcesses(root: pid)
            for process in faultedProcesses { kill(process, SIGKILL) }
            let alive = faultedProcesses.filter { !LocalProcess.waitForExit($0, within: .seconds(5)) }
            guard alive.isEmpty else { throw ProcessFaultError("pids \(alive) still alive 5 s after SIGKILL") }
        case .pause:
            faultedProcesses = controller.stopServerProcesses(root: pid)
            allStopped = Date()
        case .restart:
            // The server shuts its own helpers down on SIGTERM; every one of them must be gone before the start.
            faultedProcesses = ProcessTree.members(of: pid)
            try controller.send(controller.gracefulStopSignal)
            let alive = faultedProcesses.filter { !LocalProcess.waitForExit($0, within: recoveryTimeout) }
            guard alive.isEmpty else {
                let signal = controller.gracefulStopSignal
                throw ProcessFaultError("pids \(alive) still alive \(recoveryTimeout) after signal \(signal) to \(pid)")
            }
        }
    }

    public func stop() throws {
        switch action {
        case .kill, .restart:
            try controller.start(timeout: recoveryTimeout)
        case .pause:
            guard let pid = faultedPID else { throw ProcessFaultError("nothing was paused") }
            for process in faultedProcesses { kill(process, SIGCONT) }
            resumed = Date()
            // Then anything of the tree the list missed (a scan of /proc can take a while on a busy machine).
            ProcessTree.resume(faultedProcesses, root: pid)
        }
    }

    public func verify(_ phase: FaultPhase) -> FaultEvidence {
        guard let pid = faultedPID else { return .unknown("no pid was faulted") }
        switch phase {
        case .active: return verifyActive(pid)
        case .healed: return verifyHealed(pid)
        }
    }

    private var processesText: String {
        guard let first = faultedProcesses.first else { return "no process signalled" }
        return faultedProcesses.count == 1
            ? "1 process (pid \(first))"
            : "\(faultedProcesses.count) processes (pid \(first) and \(faultedProcesses.count - 1) descendants)"
    }

    private func verifyActive(_ pid: pid_t) -> FaultEvidence {
        let endpoint = controller.endpoint
        let processes: String
        switch action {
        case .kill, .restart:
            let alive = faultedProcesses.filter(ProcessTree.isRunning)
            guard alive.isEmpty else { return .no("pids \(alive) of \(controller.name) are still alive") }
            processes = "\(processesText) gone"
        case .pause:
            // Signal delivery is asynchronous: give the kernel up to 1 s to show every stop.
            let deadline = ContinuousClock.now + .seconds(1)
            var running = faultedProcesses.filter { !ProcessTree.isHeld($0) }
            while !running.isEmpty && ContinuousClock.now < deadline {
                usleep(5_000)
                running = running.filter { !ProcessTree.isHeld($0) }
            }
            guard running.isEmpty else { return .no("pids \(running) of \(controller.name) are not stopped") }
            processes = "\(processesText) stopped (state T)"
        }
        guard let witnessConnection else {
            return .unknown(
                "\(processes); no connection opened before the \(action.rawValue) to show what a client sees")
        }
        let old = witnessConnection.exchange(within: Self.stallTimeout)
        let oldText = "\(witnessConnection.operation) on a connection opened before the \(action.rawValue): \(old.text)"
        let new = probe.run(endpoint, timeout: Self.stallTimeout)
        let newText = "a new connection to \(endpoint): \(Self.describe(new))"
        if old.answered { return .no("\(oldText) — the server still serves its clients; \(newText); \(processes)") }
        if new.answered { return .no("\(newText); \(oldText); \(processes)") }
        if let signalledAt { timeToEvidence = signalledAt.duration(to: .now) }
        let after = timeToEvidence.map { "; evidence \($0.milliseconds) ms after the signal" } ?? ""
        return .yes("\(oldText); \(newText); \(processes)\(after)")
    }

    private func verifyHealed(_ pid: pid_t) -> FaultEvidence {
        let endpoint = controller.endpoint
        let (result, elapsed) = TCPProbe.waitFor(answered: true, within: recoveryTimeout) {
            probe.run(endpoint, timeout: .milliseconds(500))
        }
        guard result.answered else { return .no("a new connection to \(endpoint): no answer after \(recoveryTimeout)") }
        let answeredText = "a new connection to \(endpoint) answered after \(elapsed.milliseconds) ms"
        switch action {
        case .kill, .restart:
            guard let now = controller.currentPID(), now != pid else {
                return .no("\(answeredText) but no new pid (old \(pid))")
            }
            guard let witness else { return .yes("\(answeredText), new pid \(now)") }
            // The server may still be recovering (PostgreSQL after a crash): retry until it serves a client.
            var lastProblem = ""
            let deadline = ContinuousClock.now + recoveryTimeout
            while ContinuousClock.now < deadline {
                do {
                    let fresh = try witness.openWitness(to: endpoint, timeout: .seconds(2))
                    fresh.close()
                    return .yes("\(answeredText); \(witness.operation) on a new connection answered; new pid \(now)")
                } catch {
                    lastProblem = "\(error)"
                    usleep(100_000)
                }
            }
            return .no("\(answeredText) but \(witness.operation) on a new connection did not: \(lastProblem)")
        case .pause:
            // SIGCONT takes effect asynchronously: give the kernel up to 1 s to show every process running.
            let deadline = ContinuousClock.now + .seconds(1)
            var stopped = faultedProcesses.filter { ProcessTree.state(of: $0) == "T" }
            while !stopped.isEmpty && ContinuousClock.now < deadline {
                usleep(10_000)
                stopped = stopped.filter { ProcessTree.state(of: $0) == "T" }
            }
            guard stopped.isEmpty else { return .no("pids \(stopped) still stopped") }
            guard let witnessConnection else { return .yes("\(answeredText); \(processesText) running again") }
            let old = witnessConnection.exchange(within: .seconds(5))
            guard old.answered else {
                return .no(
                    "\(answeredText) but \(witnessConnection.operation) on the connection opened before the pause: "
                        + old.text)
            }
            return .yes(
                "\(answeredText); \(witnessConnection.operation) on the connection opened before the pause "
                    + "\(old.text); \(processesText) running again")
        }
    }

    public func teardown() {
        // A paused process must never stay paused: SIGCONT is harmless on a running one.
        if action == .pause, let pid = faultedPID { ProcessTree.resume(faultedProcesses, root: pid) }
        witnessConnection?.close()
        witnessConnection = nil
        // A server this fault stopped is started again; one that was down before is left alone.
        if action != .pause, faultedPID != nil, controller.currentPID() == nil {
            try? controller.start(timeout: recoveryTimeout)
        }
    }

    static func describe(_ result: TCPProbe.Result, within timeout: Duration = stallTimeout) -> String {
        switch result {
        case .answered: "answered"
        case .refused(let reason): "refused (\(reason))"
        case .timedOut: "no answer in \(timeout.milliseconds) ms"
        }
    }

    /// The state letter of /proc/PID/stat (R, S, T, Z...), nil when the process is gone.
    public static func processState(_ pid: pid_t) -> Character? { ProcessTree.state(of: pid) }
}
