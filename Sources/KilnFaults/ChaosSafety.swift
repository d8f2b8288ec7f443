import KilnCore
import KilnScenario

/// Decides, before any fault starts, whether Kiln may act on a target. Rules:
/// 1. the stack file must say `chaos_target: true` (the default for embedded and compose stacks, not for
///    external ones);
/// 2. every target must be a server of that stack (an address of its postgres, redis, kafka, graph or
///    timeseries section) — Kiln never faults a host the stack file does not name;
/// 3. a target that is not a loopback address (127.0.0.0/8, `localhost`, `::1`), or any target of an
///    `external` stack, must also be listed in the scenario's `chaos.allow` (as `host` or `host:port`) and the
///    run must be confirmed (`--confirm-chaos`).
public enum ChaosSafety {
    public struct Refusal: Error, CustomStringConvertible, Equatable {
        public var target: String
        public var reason: String
        public var description: String { "refusing to inject a fault on \(target): \(reason)" }
    }

    /// Throws the first refusal; returns when every target is permitted.
    public static func check(
        targets: [HostPort], stack: StackDefinition, allow: [String] = [], confirmed: Bool = false
    ) throws(Refusal) {
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
            guard stack.kind == .external || !isLoopback(target.host) else { continue }
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

    /// Every address the stack file names.
    public static func stackAddresses(_ stack: StackDefinition) -> [HostPort] {
        [stack.postgres.primary] + stack.postgres.replicas + [stack.redis.primary] + stack.redis.replicas
            + stack.redis.sentinels + stack.kafka.bootstrap + [stack.graph.endpoint, stack.timeseries.endpoint]
    }

    public static func isLoopback(_ host: String) -> Bool {
        if host == "localhost" || host == "::1" { return true }
        let parts = host.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 4 && parts.allSatisfy { UInt8($0) != nil } && parts[0] == "127"
    }
}
