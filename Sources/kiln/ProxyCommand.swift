import ArgumentParser
import Foundation
import KilnCore
import KilnRunner
import KilnFaults
import Logging

/// `kiln proxy`: the fault proxy on its own, with the HTTP control API, until SIGINT/SIGTERM.
struct ProxyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "proxy",
        abstract: "Run the fault proxy standalone: a TCP proxy with Toxiproxy's toxics and an HTTP control API.",
        discussion: """
            Toxics (--toxic, repeatable): TYPE[=VALUE][,KEY=VALUE...], e.g. latency=100ms,jitter=10ms;
            bandwidth=64 (KB/s); blackhole; timeout=2s; reset_peer=500ms; slow_close=1s;
            slicer=64,size_variation=16,delay=1ms; limit_data=1000. Keys: stream=upstream|downstream
            (default downstream), name=NAME, toxicity=0..1.
            Control API: GET /proxy, GET /toxics, POST /toxics (Toxiproxy JSON), DELETE /toxics/NAME, DELETE /toxics.
            """)

    @Option(help: "Address the proxy listens on, host:port.") var listen: String
    @Option(help: "The server behind the proxy, host:port.") var upstream: String
    @Option(name: .customLong("toxic"), help: "A toxic to start with (repeatable).") var toxics: [String] = []
    @Option(help: "Address of the HTTP control API, host:port (default: the listen host, port 8474).")
    var control: String?
    @Flag(name: .shortAndLong, help: "Log every connection.") var verbose = false

    func validate() throws {
        guard HostPort(parsing: listen) != nil else {
            throw ValidationError("--listen: expected host:port, got \(listen)")
        }
        guard HostPort(parsing: upstream) != nil else {
            throw ValidationError("--upstream: expected host:port, got \(upstream)")
        }
        if let control, HostPort(parsing: control) == nil {
            throw ValidationError("--control: expected host:port, got \(control)")
        }
        for toxic in toxics {
            do { _ = try Toxic.parse(toxic) } catch { throw ValidationError("--toxic \(toxic): \(error)") }
        }
    }

    func run() throws {
        try exiting {
            guard let listenAddress = HostPort(parsing: listen), let upstreamAddress = HostPort(parsing: upstream)
            else {
                throw Failure(code: .invalidInput, message: "bad --listen or --upstream")
            }
            let controlAddress =
                control.flatMap { HostPort(parsing: $0) } ?? HostPort(host: listenAddress.host, port: 8474)
            var parsed: [Toxic] = []
            for text in toxics {
                do { parsed.append(try Toxic.parse(text)) } catch {
                    throw Failure(code: .invalidInput, message: "--toxic \(text): \(error)")
                }
            }
            var logger = Logger(label: "kiln.proxy") { _ in ConsoleLogHandler(logLevel: .info) }
            logger.logLevel = verbose ? .debug : .info
            let proxy = FaultProxy(listen: listenAddress, upstream: upstreamAddress, toxics: parsed, logger: logger)
            let server = ProxyControlServer(proxy: proxy)
            do {
                try proxy.start()
                let bound = try server.start(listen: controlAddress)
                var lines = ["proxy \(proxy.listenAddress) -> \(upstreamAddress); control API http://\(bound)/toxics"]
                for toxic in parsed {
                    lines.append("toxic \(toxic.name): \(toxic.kind.typeName) \(toxic.stream.rawValue)")
                }
                // Unbuffered: a supervising script reads these lines while the proxy runs.
                FileHandle.standardOutput.write(Data((lines.joined(separator: "\n") + "\n").utf8))
            } catch {
                proxy.stop()
                server.stop()
                throw Failure(code: .stackUnavailable, message: "cannot listen: \(error)")
            }
            let healer = InterruptHealer.shared
            healer.install()
            _ = healer.register {
                server.stop()
                proxy.stop()
            }
            while true { sleep(3600) }
        }
    }
}
