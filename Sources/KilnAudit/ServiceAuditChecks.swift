import Foundation
import KilnCore
import KilnHTTP
import KilnRedis
import KilnScenario
import KilnStores

/// `clickhouse.default-no-password`: `SELECT 1` over ClickHouse's HTTP interface as `default` with an empty password.
struct ClickHouseAccessCheck: AuditCheck {
    var findingIDs: [AuditFindingID] { [.clickhouseDefaultUserNoPassword] }

    func run(_ context: AuditContext) -> [AuditResult] {
        guard let ts = context.stack.section(TimeSeriesStackConfig.self) else { return [] }
        guard ts.kind == .clickhouse else {
            return [AuditResult(.clickhouseDefaultUserNoPassword, target: "timeseries", .notApplicable(reason: "the stack's time-series store is \(ts.kind.rawValue)"))]
        }
        let target = "clickhouse \(ts.endpoint)"
        do throws(HTTPError) {
            let client = try HTTPClient(
                timeoutSeconds: Double(context.timeoutSeconds), connectTimeoutSeconds: Double(context.timeoutSeconds),
                user: "default", password: "", caFile: ts.caFile(in: context.environment))
            let response = try client.get(ts.baseURL + "?query=SELECT%201")
            let body = response.text.trimmingCharacters(in: .whitespacesAndNewlines)
            if response.status == 200 {
                return [AuditResult(.clickhouseDefaultUserNoPassword, target: target,
                    .finding(evidence: "GET /?query=SELECT 1 as default with an empty password → HTTP 200 \(body.prefix(20))"))]
            }
            let authFailed = response.status == 401 || response.status == 403 || body.contains("Code: 516")
                || body.contains("Code: 193") || body.contains("Code: 192") || body.contains("Code: 195")
            let code = body.firstMatch(of: /Code: (\d+)/).map { "Code: \($0.1)" } ?? "no ClickHouse error code"
            return [AuditResult(.clickhouseDefaultUserNoPassword, target: target,
                authFailed
                    ? .passed(evidence: "GET /?query=SELECT 1 as default with an empty password → HTTP \(response.status) (\(code))")
                    : .notChecked(reason: "GET /?query=SELECT 1 → HTTP \(response.status) (\(code))"))]
        } catch {
            return [AuditResult(.clickhouseDefaultUserNoPassword, target: target, .notChecked(reason: error.description))]
        }
    }
}

/// `kafka.no-sasl`: ApiVersions (does the broker list SaslHandshake) and an unauthenticated Metadata request (does it
/// serve a client that never authenticated), on every bootstrap server: over raw TCP first (what anyone can try), and
/// when nothing answers there, over TLS verified against the stack's CA if the `kafka:` section names one
/// (`ca_file_env`: a TLS-only listener answers nothing in plaintext).
struct KafkaSASLCheck: AuditCheck {
    var findingIDs: [AuditFindingID] { [.kafkaNoSASL] }

    func run(_ context: AuditContext) -> [AuditResult] {
        let kafka = context.stack.section(KafkaStackConfig.self)
        let tls: KafkaWireProbe.Transport? = kafka?.caFileEnvironmentVariable.map { .tls(caFile: context.secret($0)) }
        return (kafka?.bootstrap ?? []).map { endpoint in
            let target = "kafka \(endpoint)"
            var probe = KafkaWireProbe(endpoint: endpoint, timeoutSeconds: context.timeoutSeconds)
            do {
                let apiKeys: [Int16]
                do {
                    apiKeys = try probe.apiVersions()
                } catch {
                    guard let tls else { throw error }
                    probe.transport = tls
                    apiKeys = try probe.apiVersions()
                }
                let over = probe.transport == .plain ? "" : " over TLS"
                let offersSASL = apiKeys.contains(KafkaWireProbe.saslHandshakeKey)
                var mechanisms: [String] = []
                if offersSASL { mechanisms = (try? probe.saslMechanisms()) ?? [] }
                let brokers = try? probe.metadataBrokerCount()
                let sasl = offersSASL ? "lists SaslHandshake (mechanisms: \(mechanisms.joined(separator: ", ")))" : "lists no SaslHandshake"
                if let brokers {
                    return AuditResult(.kafkaNoSASL, target: target,
                        .finding(evidence: "ApiVersions v0\(over) → \(apiKeys.count) APIs, \(sasl); Metadata v0 without authentication → \(brokers) broker(s)"))
                }
                return AuditResult(.kafkaNoSASL, target: target,
                    .passed(evidence: "ApiVersions v0\(over) \(sasl); Metadata v0 without authentication was not answered"))
            } catch {
                return AuditResult(.kafkaNoSASL, target: target, .notChecked(reason: "\(error)"))
            }
        }
    }
}

/// `neo4j.auth-disabled`: a Cypher request over Neo4j's HTTP API without credentials. A stack without Neo4j (FalkorDB
/// here) is not applicable — never a pass.
struct Neo4jAuthCheck: AuditCheck {
    var findingIDs: [AuditFindingID] { [.neo4jAuthDisabled] }

    func run(_ context: AuditContext) -> [AuditResult] {
        guard let graph = context.stack.section(GraphStackConfig.self) else { return [] }
        guard graph.kind == .neo4j else {
            return [AuditResult(.neo4jAuthDisabled, target: "graph \(graph.endpoint)",
                .notApplicable(reason: "not checked: the stack has no Neo4j server (graph kind \(graph.kind.rawValue))"))]
        }
        let target = "neo4j \(graph.endpoint)"
        do throws(HTTPError) {
            let client = try HTTPClient(timeoutSeconds: Double(context.timeoutSeconds), connectTimeoutSeconds: Double(context.timeoutSeconds))
            let response = try client.post(
                "http://\(graph.endpoint)/db/\(graph.graph)/tx/commit", body: Array(#"{"statements":[{"statement":"RETURN 1"}]}"#.utf8),
                contentType: "application/json", headers: ["Accept": "application/json"])
            switch response.status {
            case 200...299:
                return [AuditResult(.neo4jAuthDisabled, target: target, .finding(evidence: "POST /db/\(graph.graph)/tx/commit RETURN 1 without credentials → HTTP \(response.status)"))]
            case 401, 403:
                return [AuditResult(.neo4jAuthDisabled, target: target, .passed(evidence: "POST RETURN 1 without credentials → HTTP \(response.status)"))]
            default:
                return [AuditResult(.neo4jAuthDisabled, target: target, .notChecked(reason: "POST RETURN 1 without credentials → HTTP \(response.status)"))]
            }
        } catch {
            return [AuditResult(.neo4jAuthDisabled, target: target, .notChecked(reason: error.description))]
        }
    }
}

/// `redis.plaintext`, `clickhouse.plaintext`, `kafka.plaintext`: does the server answer its protocol over plain TCP
/// (a TLS-only port cannot), and if not, does a TLS handshake (openssl s_client) succeed. Plaintext on a loopback
/// address never leaves the host, so it is `low` there and `high` on any other address.
struct PlaintextTransportCheck: AuditCheck {
    var findingIDs: [AuditFindingID] { [.redisPlaintext, .clickhousePlaintext, .kafkaPlaintext] }

    func run(_ context: AuditContext) -> [AuditResult] {
        var results: [AuditResult] = []
        for target in context.redisTargets where !target.isSentinel {
            let answer: String?
            // Deliberately plaintext, whatever the stack's `ca_file_env`: the question is whether the server answers it.
            if case .success(let connection) = context.redisConnect(target.server.endpoint, tls: nil) {
                do throws(RedisError) {
                    answer = try connection.command(["PING"]).string ?? "reply"
                } catch {
                    answer = redisErrorWord(error)
                }
                connection.close()
            } else {
                answer = nil
            }
            results.append(result(.redisPlaintext, store: target.store, label: target.server.label, endpoint: target.server.endpoint,
                plaintext: answer.map { "PING over plain TCP → \($0)" }))
        }
        if let ts = context.stack.section(TimeSeriesStackConfig.self), ts.kind == .clickhouse {
            var answer: String?
            if let client = try? HTTPClient(timeoutSeconds: Double(context.timeoutSeconds), connectTimeoutSeconds: Double(context.timeoutSeconds)),
                let response = try? client.get("http://\(ts.endpoint)/ping")
            {
                answer = "GET http://\(ts.endpoint)/ping → HTTP \(response.status)"
            }
            results.append(result(.clickhousePlaintext, store: .clickhouse, label: "clickhouse \(ts.endpoint)", endpoint: ts.endpoint, plaintext: answer))
        }
        let kafka = context.stack.section(KafkaStackConfig.self)
        for endpoint in kafka?.bootstrap ?? [] {
            let keys = try? KafkaWireProbe(endpoint: endpoint, timeoutSeconds: context.timeoutSeconds).apiVersions()
            var outcome = result(.kafkaPlaintext, store: .kafka, label: "kafka \(endpoint)", endpoint: endpoint,
                plaintext: keys.map { "ApiVersions v0 over plain TCP → \($0.count) APIs" })
            if case .finding(let evidence) = outcome.outcome, let kafka, let limit = Self.brokerWithoutTLS(kafka.broker) {
                outcome.outcome = .finding(evidence: evidence + "; " + limit)
            }
            results.append(outcome)
        }
        return results
    }

    /// Why no setting of `broker` can make it speak TLS (nil: the broker has TLS listeners, or is not named). The
    /// finding stays a finding: only another broker removes it.
    static func brokerWithoutTLS(_ broker: KafkaStackConfig.Broker?) -> String? {
        guard broker == .tansu else { return nil }
        return "the broker is Tansu (stack file `broker: tansu`), which has no TLS listener: in Tansu 0.6.0 (and on its "
            + "main branch) `--cert` and `--key` are one clap argument group, so the two cannot be given together, and "
            + "the broker builds a TlsAcceptor it never uses (tansu-broker/src/broker.rs `let _acceptor`), serving every "
            + "connection as plain TCP; a broker with SSL listeners (Apache Kafka, Redpanda) is the only fix"
    }

    private func result(_ id: AuditFindingID, store: AuditStore, label: String, endpoint: HostPort, plaintext: String?) -> AuditResult {
        let severity: AuditSeverity = isLoopback(endpoint.host) ? .low : .high
        if let plaintext {
            return AuditResult(id, store: store, target: label, severity: severity,
                .finding(evidence: plaintext + (isLoopback(endpoint.host) ? " (loopback address: traffic stays on this host)" : "")))
        }
        switch TLSHandshake.attempt(endpoint) {
        case .success(let protocolName):
            return AuditResult(id, store: store, target: label, severity: severity,
                .passed(evidence: "no plaintext answer; openssl s_client handshake → \(protocolName)"))
        case .failure(let reason):
            return AuditResult(id, store: store, target: label, severity: severity,
                .notChecked(reason: "neither a plaintext answer nor a TLS handshake: \(reason)"))
        }
    }
}

/// A TLS handshake through `openssl s_client` (no certificate verification: the question is whether TLS is spoken).
enum TLSHandshake {
    struct Failure: Error { var reason: String }

    static func attempt(_ endpoint: HostPort, timeoutSeconds: Int = 5) -> Result<String, Failure> {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/timeout")
        process.arguments = [String(timeoutSeconds), "openssl", "s_client", "-brief", "-connect", endpoint.description]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        process.standardInput = FileHandle(forReadingAtPath: "/dev/null")
        do { try process.run() } catch { return .failure(Failure(reason: "cannot run openssl: \(error)")) }
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let text = String(decoding: data, as: UTF8.self)
        if let line = text.split(separator: "\n").first(where: { $0.hasPrefix("Protocol version:") }) {
            return .success(line.replacingOccurrences(of: "Protocol version: ", with: ""))
        }
        return .failure(Failure(reason: "openssl s_client: no TLS session (exit \(process.terminationStatus))"))
    }
}
