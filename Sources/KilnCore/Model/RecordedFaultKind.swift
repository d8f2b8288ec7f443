/// The kind of a fault as the fault timeline records it (report.json `faults[].kind`): one case per fault type
/// Kiln injects, so readers of a report (drill metrics) match a kind, never a string prefix. `recorded` is the only
/// spelling; `init?(recorded:)` reads it back and refuses anything else.
public enum RecordedFaultKind: Sendable, Equatable {
    public enum ProcessAction: String, Sendable, CaseIterable {
        case kill, pause, restart
    }

    public enum RedisFailoverTrigger: String, Sendable, CaseIterable {
        /// `SENTINEL FAILOVER`.
        case command
        /// SIGKILL of the primary; the Sentinels detect it.
        case kill
    }

    /// Kill, pause or restart of a server's processes: `kill`, `pause`, `restart`.
    case process(ProcessAction)
    /// Kill or pause of a Kafka-API broker: `kafka:kill`, `kafka:pause`.
    case kafkaBroker(ProcessAction)
    /// A toxic on the fault proxy: `proxy:<toxic type>`, e.g. `proxy:latency`.
    case proxy(toxic: String)
    case partition
    case pgFailover
    /// `redis-failover` (command) or `redis-failover:kill`.
    case redisFailover(RedisFailoverTrigger)
    case clockSkew

    public var recorded: String {
        switch self {
        case .process(let action): action.rawValue
        case .kafkaBroker(let action): "kafka:\(action.rawValue)"
        case .proxy(let toxic): "proxy:\(toxic)"
        case .partition: "partition"
        case .pgFailover: "pg-failover"
        case .redisFailover(.command): "redis-failover"
        case .redisFailover(.kill): "redis-failover:kill"
        case .clockSkew: "clock-skew"
        }
    }

    public init?(recorded: String) {
        if let action = ProcessAction(rawValue: recorded) {
            self = .process(action)
            return
        }
        let parts = recorded.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
        switch (parts.first, parts.count == 2 ? parts[1] : nil) {
        case ("kafka", let action?):
            guard let action = ProcessAction(rawValue: action), action != .restart else { return nil }
            self = .kafkaBroker(action)
        case ("proxy", let toxic?) where !toxic.isEmpty: self = .proxy(toxic: toxic)
        case ("partition", nil): self = .partition
        case ("pg-failover", nil): self = .pgFailover
        case ("redis-failover", nil): self = .redisFailover(.command)
        case ("redis-failover", "kill"): self = .redisFailover(.kill)
        case ("clock-skew", nil): self = .clockSkew
        default: return nil
        }
    }

    /// The store a failover moves, whatever its target names (`kiln via sentinels …`); nil for every other kind,
    /// whose store follows from its target.
    public var failoverStore: String? {
        switch self {
        case .pgFailover: "postgres"
        case .redisFailover: "redis"
        case .process, .kafkaBroker, .proxy, .partition, .clockSkew: nil
        }
    }
}
