import KilnCore
import KilnScenario
import KilnStores
import KilnStack
import Logging

/// Decides, before any fault starts, whether Kiln may act on a target. Rules:
/// 1. the stack file must say `chaos_target: true` (the default for embedded and compose stacks, not for
///    external ones);
/// 2. every target must be a server of that stack (an address of its postgres, redis, kafka, graph or
///    timeseries section) — Kiln never faults a host the stack file does not name;
/// 3. a target that is not a loopback address (127.0.0.0/8, `localhost`, `::1`), or any target of an
///    `external` stack that Kiln's own script did not start (`started_by:`), must also be listed in the scenario's
///    `chaos.allow` (as `host` or `host:port`) and the run must be confirmed (`--confirm-chaos`) — except an address of 10.213.7.0/24 in an embedded `network: hosts`
///    stack that a host Kiln created (a `kiln.*` namespace) holds right now.
public enum ChaosSafety {
    public struct Refusal: Error, CustomStringConvertible, Equatable {
        public var target: String
        public var reason: String
        public var description: String { "refusing to inject a fault on \(target): \(reason)" }
    }

    /// Throws the first refusal; returns when every target is permitted.
    public static func check(
        targets: [HostPort], stack: StackDefinition, allow: [String] = [], confirmed: Bool = false,
        kilnHostAddresses: (() -> Set<String>)? = nil
    ) throws(Refusal) {
        var kilnHosts: Set<String>?
        let members = Set(stackAddresses(stack).map(\.description))
        for target in targets {
            guard stack.chaosTarget else {
                throw Refusal(
                    target: target.description,
                    reason: "stack \(stack.name) (\(stack.source)) is not a chaos target; set chaos_target: true")
            }
            guard members.contains(target.description) else {
                throw Refusal(target: target.description, reason: "not a server of stack \(stack.name)")
            }
            // A loopback server Kiln started (embedded) or its own script did (`started_by:`) is Kiln's to fault.
            guard (stack.kind == .external && stack.startedBy == nil) || !isLoopback(target.host) else { continue }
            if stack.kind == .embedded, stack.network == .hosts, HostAddress(target.host) != nil {
                if kilnHosts == nil { kilnHosts = (kilnHostAddresses ?? Self.currentKilnHostAddresses)() }
                guard kilnHosts?.contains(target.host) == true else {
                    throw Refusal(
                        target: target.description,
                        reason: "no host Kiln created holds \(target.host) "
                            + "(start the stack: kiln stack up --stack \(stack.source))")
                }
                continue
            }
            guard allow.contains(target.host) || allow.contains(target.description) else {
                throw Refusal(
                    target: target.description, reason: "external host not listed in the scenario's chaos.allow")
            }
            guard confirmed else {
                throw Refusal(
                    target: target.description,
                    reason: "external host listed in chaos.allow, but --confirm-chaos not given")
            }
        }
    }

    /// The addresses Kiln's hosts (`kiln.*` network namespaces) hold now.
    public static func currentKilnHostAddresses() -> Set<String> {
        let hosts = (try? HostNetwork(logger: Logger(label: "kiln.chaos-safety")).hosts()) ?? []
        return Set(hosts.map(\.address.description))
    }

    /// Every address the stack file names (each section's `addresses`, from its backend).
    public static func stackAddresses(_ stack: StackDefinition) -> [HostPort] {
        stack.addresses.map(\.address)
    }

    public static func isLoopback(_ host: String) -> Bool {
        if host == "localhost" || host == "::1" { return true }
        let parts = host.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 4 && parts.allSatisfy { UInt8($0) != nil } && parts[0] == "127"
    }
}
