import ArgumentParser
import Foundation
import KilnCore
import KilnRunner
import KilnFaults
import KilnStack
import Logging

extension BenchCommand {
    /// Faults between hosts on private namespaces (owned by this process, .100–.199; removed at the end, also on
    /// failure): the time from a fault's start to its client-side evidence, and what that evidence measured.
    struct HostFaults: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "host-faults",
            abstract:
                "Time from start to evidence of partition, loss, bandwidth and latency faults between namespaces.",
            discussion: """
                partition: isolate one of 5 hosts; evidence is the 20-pair TCP probe matrix (500 ms probe timeout).
                loss:      10 % each way on one link; evidence is 1,500 numbered UDP datagrams each way.
                bandwidth: 1 MB/s token bucket on one host; evidence is a 2 s TCP stream after 0.5 s of warm-up.
                latency:   50 ms toxic on a proxy beside one link; evidence is the median of 5 round trips.
                Needs root and iproute2; touches no stack.
                """
        )
        @Option(help: "Trials per fault kind; medians are reported.") var trials = 5

        func validate() throws {
            if !(1...100).contains(trials) { throw ValidationError("--trials must be between 1 and 100") }
        }

        func run() throws {
            try exiting {
                let network = HostNetwork(logger: Logger(label: "kiln.bench.hosts"))
                let owner = HostOwner.currentProcess
                defer { _ = try? network.removeHosts(of: owner) }
                var hosts: [FaultHost] = []
                let held = Set(try network.hosts().map(\.address))
                let free = (100...199).compactMap { try? HostAddress(octet: $0) }.filter { !held.contains($0) }
                guard free.count >= 5 else {
                    throw Failure(code: .stackUnavailable, message: "no 5 free host addresses in .100-.199")
                }
                for (index, name) in ["a", "b", "c", "d", "e"].enumerated() {
                    var host = FaultHost(
                        try network.addHost(NetworkHost(name: "bench-\(name)", address: free[index], owner: owner)))
                    host.name = name
                    hosts.append(host)
                }
                let listeners = try hosts.map { try HostListener(in: $0) }
                let echo = try HostListener(in: hosts[1], echo: true)
                let proxy = FaultProxy(
                    listen: HostPort(host: HostFaultRules.rootAddress, port: 0), upstream: echo.endpoint)
                try proxy.start()
                defer {
                    proxy.stop()
                    echo.close()
                    for listener in listeners { listener.close() }
                }
                let byName = Dictionary(uniqueKeysWithValues: hosts.map { ($0.name, $0) })
                let ports = Dictionary(uniqueKeysWithValues: zip(hosts.map(\.name), listeners.map(\.endpoint.port)))
                var rows = [["FAULT", "START->EVIDENCE median (min-max)", "MEASURED median (min-max)", "VERIFIED"]]
                func row(_ label: String, _ unit: String, _ build: (Int) throws -> (any Fault, () -> Double)) throws {
                    var times: [Double] = []
                    var values: [Double] = []
                    var verdicts: [String] = []
                    for trial in 0..<trials {
                        let (fault, measured) = try build(trial)
                        let driver = FaultDriver(fault)
                        let start = ContinuousClock.now
                        let active = driver.start()
                        times.append(start.duration(to: .now).secondsValue * 1000)
                        values.append(measured())
                        let record = driver.stop()
                        verdicts.append("\(active.verified == .no ? "no" : "yes")/\(record.verified.rawValue)")
                    }
                    rows.append([
                        label, Self.spread(times, "ms"), Self.spread(values, unit),
                        Dictionary(grouping: verdicts) { $0 }.map { "\($0.value.count)× \($0.key)" }.sorted().joined(
                            separator: " "),
                    ])
                }
                let names = hosts.map(\.name)
                try row("partition isolate (5 hosts)", "blocked") { trial in
                    let grudge = try PartitionGrudge(shape: .isolate(nil), hosts: names, seed: UInt64(trial))
                    let fault = try HostPartitionFault(
                        name: "bench-partition", grudge: grudge, hosts: byName, ports: ports, runID: "bench-\(getpid())"
                    )
                    return (fault, { Double(grudge.blocked.count) })
                }
                try row("loss 10 % (a<->b)", "% lost") { _ in
                    let fault = try LinkLossFault(
                        name: "bench-loss", between: hosts[0], and: hosts[1], probability: 0.1,
                        runID: "bench-\(getpid())")
                    return (
                        fault,
                        {
                            let lost = fault.lastLoss.reduce(0) { $0 + $1.sent - $1.received }
                            return 100 * Double(lost) / Double(max(1, fault.lastLoss.reduce(0) { $0 + $1.sent }))
                        }
                    )
                }
                try row("bandwidth 1 MB/s (a)", "B/s") { _ in
                    let fault = try BandwidthFault(
                        name: "bench-bw", host: hosts[0], bytesPerSecond: 1_000_000, peer: hosts[1])
                    return (fault, { fault.lastRate ?? 0 })
                }
                try row("latency 50 ms (a->b via proxy)", "ms RTT") { _ in
                    let fault = try LinkLatencyFault(
                        name: "bench-latency", client: hosts[0], proxy: proxy, latency: .milliseconds(50),
                        request: [0x2A])
                    return (fault, { fault.lastRoundTrips.sorted()[fault.lastRoundTrips.count / 2] })
                }
                print(TextTable.render(rows))
                return .ok
            }
        }

        static func spread(_ values: [Double], _ unit: String) -> String {
            let sorted = values.sorted()
            return String(format: "%.1f %@ (%.1f-%.1f)", sorted[sorted.count / 2], unit, sorted.first!, sorted.last!)
        }
    }
}

extension Duration {
    fileprivate var secondsValue: Double { seconds }
}
