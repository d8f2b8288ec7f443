import Foundation
import KilnBackends
import KilnCore
import KilnRedis
import KilnScenario
import Testing

@testable import KilnAudit

/// The stack-file fields that say how Kiln's RESP clients reach a server (`ca_file_env` on `redis:` and `graph:`) and
/// which Kafka-API broker serves (`kafka.broker`): parsing, refusals with their location, and what they give the
/// clients. No server.
@Suite("TLS stack fields")
struct TLSStackFieldsTests {
    static let rest = "postgres: {primary: 127.0.0.1:1}\nkafka: {bootstrap: [127.0.0.1:3]}\n"
        + "timeseries: {kind: clickhouse, endpoint: 127.0.0.1:5}\n"

    @Test func caFileEnvGivesEveryRedisAndFalkorDBClientTLS() throws {
        let stack = try StackDefinition.parse(
            "kind: external\n" + Self.rest
                + "redis: {primary: 127.0.0.1:2, sentinels: [127.0.0.1:6], user: app, password_env: P, ca_file_env: CA}\n"
                + "graph: {kind: falkordb, endpoint: 127.0.0.1:4, user: app, password_env: P, ca_file_env: CA}\n",
            file: "s.yaml")
        let environment = ["P": "secret", "CA": "/run/ca.crt"]
        #expect(stack.redis.tls(in: environment) == RedisTLS(caFile: "/run/ca.crt"))
        #expect(stack.redis.credentials(in: environment) == RedisCredentials(user: "app", password: "secret", tls: RedisTLS(caFile: "/run/ca.crt")))
        #expect(stack.graph.credentials(in: environment).tls == RedisTLS(caFile: "/run/ca.crt"))
        // The variable unset: still TLS, verified against the system's CA certificates (never a silent plaintext).
        #expect(stack.redis.tls(in: [:]) == RedisTLS(caFile: nil))
        let resolver = RedisPrimaryResolver(stack.redis, timeout: .seconds(1), environment: environment)
        #expect(resolver.tls == RedisTLS(caFile: "/run/ca.crt"))

        let plain = try StackDefinition.parse(
            "kind: external\n" + Self.rest + "redis: {primary: 127.0.0.1:2}\ngraph: {kind: falkordb, endpoint: 127.0.0.1:4}\n",
            file: "p.yaml")
        #expect(plain.redis.tls(in: environment) == nil && plain.graph.tls(in: environment) == nil)
        #expect(plain.redis.credentials(in: environment) == RedisCredentials(user: nil, password: nil))
    }

    /// `kafka.sasl_mechanism` / `user` / `password_env` / `ca_file_env` → librdkafka's sasl_ssl properties; a login
    /// without its parts, or on an embedded stack, is refused; a missing password is an error naming the variable.
    @Test func kafkaLoginFieldsGiveEveryKafkaClientSASLSSL() throws {
        let other = "postgres: {primary: 127.0.0.1:1}\nredis: {primary: 127.0.0.1:2}\n"
        let stack = try StackDefinition.parse(
            "kind: external\n" + other
                + "kafka: {bootstrap: [127.0.0.1:3], sasl_mechanism: scram-sha-512, user: app, password_env: KP, ca_file_env: CA}\n",
            file: "s.yaml")
        let properties = try stack.kafka.clientProperties(in: ["KP": "secret", "CA": "/run/ca.crt"])
        #expect(properties == [
            "security.protocol": "sasl_ssl", "sasl.mechanisms": "SCRAM-SHA-512", "sasl.username": "app",
            "sasl.password": "secret", "ssl.ca.location": "/run/ca.crt", "ssl.endpoint.identification.algorithm": "https",
            "enable.ssl.certificate.verification": "true",
        ])
        #expect(throws: KafkaStackConfig.SecurityError.self) { try stack.kafka.clientProperties(in: ["CA": "/run/ca.crt"]) }
        let plain = try StackDefinition.parse("kind: external\n" + other + "kafka: {bootstrap: [127.0.0.1:3]}\n", file: "p.yaml")
        #expect(try plain.kafka.clientProperties(in: [:]).isEmpty)
        for bad in [
            "kind: external\n" + other + "kafka: {bootstrap: [127.0.0.1:3], sasl_mechanism: scram-sha-512, password_env: KP}\n",
            "kind: external\n" + other + "kafka: {bootstrap: [127.0.0.1:3], user: app, password_env: KP}\n",
            "kind: external\n" + other + "kafka: {bootstrap: [127.0.0.1:3], sasl_mechanism: plain, user: app, password_env: KP}\n",
            "kind: embedded\n" + other + "kafka: {bootstrap: [127.0.0.1:3], ca_file_env: CA}\n",
        ] {
            #expect(throws: SpecError.self, "\(bad)") { try StackDefinition.parse(bad, file: "b.yaml") }
        }
    }

    @Test func tlsFieldsAreRefusedWhereKilnCannotHonourThem() {
        // Kiln starts an embedded stack's Redis without TLS; Neo4j is HTTP.
        let cases: [(String, String)] = [
            ("kind: embedded\n" + Self.rest + "redis: {primary: 127.0.0.1:2, ca_file_env: CA}\ngraph: {kind: falkordb, endpoint: 127.0.0.1:4}\n", "redis.ca_file_env"),
            ("kind: external\n" + Self.rest + "redis: {primary: 127.0.0.1:2}\ngraph: {kind: neo4j, endpoint: 127.0.0.1:4, ca_file_env: CA}\n", "graph.ca_file_env"),
        ]
        for (text, field) in cases {
            let error = #expect(throws: SpecError.self) { try StackDefinition.parse(text, file: "bad.yaml") }
            #expect(error?.description.contains(field) == true, "\(String(describing: error))")
        }
    }

    @Test func kafkaBrokerIsParsedAndTansusMissingTLSIsNamed() throws {
        let external = try StackDefinition.parse(
            "kind: external\npostgres: {primary: 127.0.0.1:1}\nkafka: {bootstrap: [127.0.0.1:3], broker: tansu}\n", file: "k.yaml")
        #expect(external.kafka.broker == .tansu)
        let unnamed = try StackDefinition.parse("kind: external\nkafka: {bootstrap: [127.0.0.1:3]}\n", file: "k.yaml")
        #expect(unnamed.kafka.broker == nil)
        let embedded = try StackDefinition.parse("kind: embedded\nkafka: {bootstrap: [127.0.0.1:3]}\n", file: "k.yaml")
        #expect(embedded.kafka.broker == .tansu, "Kiln starts Tansu for an embedded stack")
        #expect(throws: SpecError.self) { try StackDefinition.parse("kind: external\nkafka: {bootstrap: [127.0.0.1:3], broker: kafka9}\n", file: "k.yaml") }
        #expect(throws: SpecError.self) { try StackDefinition.parse("kind: embedded\nkafka: {bootstrap: [127.0.0.1:3], broker: redpanda}\n", file: "k.yaml") }

        let reason = try #require(PlaintextTransportCheck.brokerWithoutTLS(.tansu))
        #expect(reason.contains("Tansu") && reason.contains("--cert") && reason.contains("TlsAcceptor"))
        #expect(PlaintextTransportCheck.brokerWithoutTLS(.apacheKafka) == nil && PlaintextTransportCheck.brokerWithoutTLS(nil) == nil)
    }
}
