import Foundation
import KilnCore
import KilnFaults
import KilnRedis
import KilnScenario
import KilnStack
import KilnStores
import Testing

/// Faults on the hardened stack's FalkorDB, which listens on no TCP port — only on a unix socket in a 0700 directory,
/// behind stunnel at 127.0.33.41:33390 — more tests of the serialized suite "kiln audit: the hardened stack", since
/// every test there brings the stack up on the same fixed addresses.
extension AuditHardenedStackTests {
    @Test func falkordbPauseKillAndRestartBehindStunnelAreVerifiedByAClientThatLogsIn() throws {
        let secure = try SecureStackFixture.up("secure-falkordb-faults")
        defer { secure.down() }
        let (stack, stackDirectory, environment) = (secure.stack, secure.stackDirectory, secure.environment)
        let script = secure.script
        let falkordb = try #require(stack.server(named: "falkordb"))

        // The pid check: FalkorDB's pid holds the listening unix socket servers.json names; stunnel (which holds the
        // TCP address) and PostgreSQL are never taken for it, nor is FalkorDB's pid for another socket path.
        let socket = stackDirectory.appendingPathComponent("falkordb-socket/falkordb.sock")
        #expect(falkordb.unixSocket?.path == socket.path)
        #expect(!ListeningSockets.inodes(listeningOnUnixSocket: socket.path).isEmpty)
        let server = try #require(ScriptedStack.listeningPID(falkordb), "DIR/falkordb.pid's FalkorDB holds its socket")
        for other in ["falkordb-tls.pid", "postgres.pid"] {
            var misnamed = falkordb
            misnamed.pidFile = stackDirectory.appendingPathComponent(other)
            #expect(ScriptedStack.listeningPID(misnamed) == nil, "\(other) is not FalkorDB")
        }
        var elsewhere = falkordb
        elsewhere.unixSocket = stackDirectory.appendingPathComponent("falkordb-socket/other.sock")
        #expect(ScriptedStack.listeningPID(elsewhere) == nil)

        let login = ServerProtocol.redisLogin(
            user: "kiln_app", password: try #require(environment["KILN_SECURE_REDIS_PASSWORD"]),
            tls: RedisTLS(caFile: environment["KILN_SECURE_TLS_CA"]))
        let operation = "PING (after AUTH as kiln_app, over TLS)"
        let controller = ScriptedProcessController(
            falkordb, script: URL(fileURLWithPath: script), directory: stackDirectory, environment: environment,
            readyProbe: .login(login))

        // The pause of FalkorDB itself: stunnel still accepts and completes TLS, but the client that logged in before
        // the pause gets no reply, nor does a new login; after the resume both are served again.
        let pause = FaultDriver(ProcessFault(name: "pause-falkordb", action: .pause, controller: controller, speaking: login))
        let paused = pause.start()
        #expect(paused.verified != .no, "\(paused.note)")
        #expect(paused.note.contains("\(operation) on a connection opened before the pause: no reply"), "\(paused.note)")
        let resumed = pause.stop()
        #expect(resumed.verified == .yes, "\(resumed.note)")
        #expect(ScriptedStack.listeningPID(falkordb) == server, "the same FalkorDB serves again")

        // A kill: the script's `up` starts FalkorDB again on its socket; a new login through stunnel is served.
        let kill = FaultDriver(
            ProcessFault(name: "kill-falkordb", action: .kill, controller: controller, speaking: login, recoveryTimeout: .seconds(60)))
        let killed = kill.start()
        #expect(killed.verified != .no && killed.note.contains("gone"), "\(killed.note)")
        let restarted = kill.stop()
        #expect(restarted.verified == .yes, "\(restarted.note)")
        let newServer = ScriptedStack.listeningPID(falkordb)
        #expect(newServer != nil && newServer != server, "a new FalkorDB: \(String(describing: newServer))")

        // A restart (SIGTERM, then the script's `up`): the same evidence, from yet another FalkorDB.
        let restart = FaultDriver(
            ProcessFault(name: "restart-falkordb", action: .restart, controller: controller, speaking: login, recoveryTimeout: .seconds(60)))
        let stopping = restart.start()
        #expect(stopping.verified != .no, "\(stopping.note)")
        let started = restart.stop()
        #expect(started.verified == .yes, "\(started.note)")
        let third = ScriptedStack.listeningPID(falkordb)
        #expect(third != nil && third != newServer, "another FalkorDB: \(String(describing: third))")
    }
}
