import KilnFaults
import KilnScenario
import Testing

/// The pure side of partitions between hosts: Jepsen's shapes as directed blocked pairs, the rules that realise
/// them, and the probe matrix's judgement. No server, no namespace.
@Suite("Partition shapes between hosts (pure)")
struct HostPartitionShapeTests {
    let five = ["n1", "n2", "n3", "n4", "n5"]

    /// The hosts `host` receives from (itself included): its view of the cluster.
    func view(_ grudge: PartitionGrudge, _ host: String) -> Set<String> {
        Set(grudge.hosts.filter { !grudge.blocked.contains(HostLink($0, host)) })
    }

    @Test func isolateCutsOneHostBothWaysAndNothingElse() throws {
        let grudge = try PartitionGrudge(shape: .isolate("n3"), hosts: five, seed: 1)
        #expect(grudge.blocked.count == 8)
        for other in five where other != "n3" {
            #expect(grudge.blocked.contains(HostLink("n3", other)))
            #expect(grudge.blocked.contains(HostLink(other, "n3")))
        }
        #expect(grudge.connects("n1", "n2"))
        #expect(!grudge.connects("n1", "n3"))
        #expect(grudge.receivers == Set(five))
    }

    @Test func drawnHostsFollowTheSeed() throws {
        let first = try PartitionGrudge(shape: .isolate(nil), hosts: five, seed: 42)
        let again = try PartitionGrudge(shape: .isolate(nil), hosts: five, seed: 42)
        #expect(first == again)
        var loners: Set<String> = []
        for seed in 0..<40 as Range<UInt64> {
            let grudge = try PartitionGrudge(shape: .isolate(nil), hosts: five, seed: seed)
            let loner = five.first { host in
                five.allSatisfy { $0 == host || grudge.blocked.contains(HostLink($0, host)) }
            }
            loners.insert(try #require(loner))
        }
        #expect(loners.count >= 4, "40 seeds drew only \(loners)")
    }

    @Test func halvesAreTheSmallerFirstAndCutCompletely() throws {
        for seed in 0..<10 as Range<UInt64> {
            let grudge = try PartitionGrudge(shape: .halves, hosts: five, seed: seed)
            let views = Set(five.map { view(grudge, $0) })
            #expect(views.map(\.count).sorted() == [2, 3])
            // Every host sees exactly its own half; the halves cover the hosts.
            #expect(views.reduce(Set<String>()) { $0.union($1) } == Set(five))
            #expect(grudge.blocked.count == 2 * 2 * 3)
        }
    }

    @Test func majoritiesRingGivesEveryHostADistinctMajority() throws {
        for hosts in [Array(five), ["a", "b", "c"], ["a", "b", "c", "d"], ["a", "b", "c", "d", "e", "f", "g"]] {
            for seed in 0..<5 as Range<UInt64> {
                let grudge = try PartitionGrudge(shape: .majoritiesRing, hosts: hosts, seed: seed)
                let views = hosts.map { view(grudge, $0) }
                let majority = hosts.count / 2 + 1
                #expect(views.allSatisfy { $0.count == majority }, "\(grudge.description)")
                #expect(Set(views).count == hosts.count, "two hosts see the same majority: \(grudge.description)")
                for host in hosts { #expect(view(grudge, host).contains(host)) }
            }
        }
    }

    @Test func bridgeKeepsOneHostConnectedToBothHalves() throws {
        let grudge = try PartitionGrudge(shape: .bridge("n2"), hosts: five, seed: 7)
        for other in five where other != "n2" { #expect(grudge.connects("n2", other)) }
        let rest = five.filter { $0 != "n2" }
        let views = Set(rest.map { view(grudge, $0).subtracting(["n2"]) })
        #expect(views.map(\.count).sorted() == [2, 2])
        #expect(grudge.blocked.count == 2 * 2 * 2)
        let drawn = try PartitionGrudge(shape: .bridge(nil), hosts: five, seed: 7)
        let bridges = five.filter { host in five.allSatisfy { $0 == host || drawn.connects(host, $0) } }
        #expect(bridges.count == 1)
    }

    @Test func oneWayBlocksOneDirectionButTCPFailsBothWays() throws {
        let grudge = try PartitionGrudge(shape: .oneWay(from: ["n1"], to: ["n2", "n3"]), hosts: five, seed: 0)
        #expect(grudge.blocked == [HostLink("n1", "n2"), HostLink("n1", "n3")])
        #expect(grudge.receivers == ["n2", "n3"])
        #expect(!grudge.connects("n1", "n2") && !grudge.connects("n2", "n1"))
        #expect(grudge.connects("n2", "n3") && grudge.connects("n4", "n1"))
    }

    @Test func namedSidesLeaveOtherHostsUntouched() throws {
        let hosts = [
            "redis-primary", "sentinel-1", "clients-a", "redis-replica", "sentinel-2", "sentinel-3", "clients-b",
            "kafka",
        ]
        let grudge = try PartitionGrudge(
            shape: .sides([
                ["redis-primary", "sentinel-1", "clients-a"],
                ["redis-replica", "sentinel-2", "sentinel-3", "clients-b"],
            ]),
            hosts: hosts, seed: 0)
        #expect(grudge.blocked.count == 2 * 3 * 4)
        for host in hosts { #expect(grudge.connects("kafka", host) || host == "kafka") }
        #expect(grudge.connects("clients-a", "redis-primary"))
        #expect(!grudge.connects("clients-a", "redis-replica"))
    }

    @Test func malformedShapesAreRefusedWithTheReason() {
        #expect(throws: PartitionError.self) { try PartitionGrudge(shape: .isolate("n9"), hosts: five, seed: 0) }
        #expect(throws: PartitionError.self) { try PartitionGrudge(shape: .halves, hosts: ["n1", "n1"], seed: 0) }
        #expect(throws: PartitionError.self) {
            try PartitionGrudge(shape: .majoritiesRing, hosts: ["a", "b"], seed: 0)
        }
        #expect(throws: PartitionError.self) { try PartitionGrudge(shape: .bridge(nil), hosts: ["a", "b"], seed: 0) }
        #expect(throws: PartitionError.self) { try PartitionGrudge(shape: .halves, hosts: ["a"], seed: 0) }
        #expect(throws: PartitionError.self) {
            try PartitionGrudge(shape: .oneWay(from: ["n1"], to: ["n1"]), hosts: five, seed: 0)
        }
        #expect(throws: PartitionError.self) {
            try PartitionGrudge(shape: .sides([["n1", "n2"], ["n2", "n3"]]), hosts: five, seed: 0)
        }
        #expect(throws: PartitionError.self) { try PartitionGrudge(shape: .sides([["n1"], []]), hosts: five, seed: 0) }
        #expect(throws: PartitionError.self) {
            try PartitionGrudge(shape: .sides([["n1", "n2"]]), hosts: five, seed: 0)
        }
    }

    func host(_ name: String, _ last: Int) -> FaultHost {
        FaultHost(name: name, address: "10.213.7.\(last)", namespace: "kiln-\(name)", device: "kv-\(name)")
    }

    @Test func rulesDropAtTheReceiverWithTheRunTag() throws {
        let grudge = try PartitionGrudge(shape: .oneWay(from: ["a"], to: ["b"]), hosts: ["a", "b", "c"], seed: 0)
        let hosts = ["a": host("a", 101), "b": host("b", 102), "c": host("c", 103)]
        let rules = try HostFaultRules.partition(grudge, hosts: hosts, runID: "run-1")
        #expect(rules.count == 1)
        #expect(rules[0].host.name == "b")
        #expect(PartitionRules.parse(comment: PartitionRules.comment(runID: "run-1"))?.runID == "run-1")
        #expect(
            rules[0].arguments == [
                "INPUT", "-s", "10.213.7.101/32", "-d", "10.213.7.102/32", "-m", "comment", "--comment",
                PartitionRules.comment(runID: "run-1"),
                "-j", "DROP",
            ])
        let loss = try HostFaultRules.loss(between: hosts["a"]!, and: hosts["b"]!, probability: 0.1, runID: "run-1")
        #expect(loss.map(\.host.name) == ["b", "a"])
        #expect(loss[0].arguments.contains("0.100000"))
        let tbf = try HostFaultRules.bandwidth(hosts["a"]!, bytesPerSecond: 1_000_000)
        #expect(tbf.joined(separator: " ") == "qdisc add dev kv-a root tbf rate 8000000bit burst 20000 latency 100ms")
    }

    @Test func addressesOutsideKilnsSubnetAndBadValuesAreRefused() throws {
        let grudge = try PartitionGrudge(shape: .isolate("a"), hosts: ["a", "b"], seed: 0)
        for address in ["192.168.1.5", "10.213.8.4", "127.0.0.1", "10.213.7.0", "10.213.7.255", "10.213.7.1/24", "x"] {
            let outside = FaultHost(name: "b", address: address, namespace: "kiln-b")
            #expect(throws: PartitionError.self) {
                try HostFaultRules.partition(grudge, hosts: ["a": host("a", 101), "b": outside], runID: "r")
            }
        }
        // Only the root host may live outside a namespace.
        #expect(throws: PartitionError.self) {
            try HostFaultRules.partition(
                grudge, hosts: ["a": host("a", 101), "b": FaultHost(name: "b", address: "10.213.7.9", namespace: nil)],
                runID: "r")
        }
        #expect(throws: PartitionError.self) {
            try HostFaultRules.partition(grudge, hosts: ["a": host("a", 101), "b": host("b", 102)], runID: "bad id")
        }
        for probability in [0, -0.1, 1.5, Double.nan, Double.infinity] {
            #expect(throws: PartitionError.self) {
                try HostFaultRules.loss(
                    between: host("a", 101), and: host("b", 102), probability: probability, runID: "r")
            }
        }
        for rate in [0, -5, 999, Int.max] {
            #expect(throws: PartitionError.self) { try HostFaultRules.bandwidth(host("a", 101), bytesPerSecond: rate) }
        }
        #expect(throws: PartitionError.self) {
            try HostFaultRules.bandwidth(
                FaultHost(name: "a", address: "10.213.7.101", namespace: "kiln-a", device: "x; rm"),
                bytesPerSecond: 1000)
        }
    }

    @Test func theMatrixMustMatchTheShapeExactly() throws {
        let grudge = try PartitionGrudge(shape: .isolate("a"), hosts: ["a", "b", "c"], seed: 0)
        var results: [HostLink: TCPProbe.Result] = [:]
        for pair in grudge.pairs { results[pair] = grudge.connects(pair.from, pair.to) ? .answered : .timedOut }
        #expect(ProbeMatrix(results: results).evidence(grudge, phase: .active).verified == .yes)
        #expect(ProbeMatrix(results: results).evidence(grudge, phase: .healed).verified == .no)
        // A rule that missed one pair: that pair is named.
        var leaky = results
        leaky[HostLink("b", "a")] = .answered
        let evidence = ProbeMatrix(results: leaky).evidence(grudge, phase: .active)
        #expect(evidence.verified == .no)
        #expect(evidence.text.contains("b -> a connected (expected to time out)"))
        // A refusal is not a drop: packets reached a closed port.
        var refused = results
        refused[HostLink("a", "b")] = .refused("Connection refused")
        #expect(ProbeMatrix(results: refused).evidence(grudge, phase: .active).verified == .no)
        // A pair not probed is not evidence.
        var missing = results
        missing[HostLink("c", "b")] = nil
        #expect(ProbeMatrix(results: missing).evidence(grudge, phase: .active).text.contains("c -> b not probed"))
        var full: [HostLink: TCPProbe.Result] = [:]
        for pair in grudge.pairs { full[pair] = .answered }
        #expect(ProbeMatrix(results: full).evidence(grudge, phase: .healed).verified == .yes)
        #expect(ProbeMatrix(results: full).evidence(grudge, phase: .active).verified == .no)
    }
}
