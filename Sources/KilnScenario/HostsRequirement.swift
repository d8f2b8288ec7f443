import Foundation

/// What only a hosts stack (`network: hosts`) can run: faults between hosts (partition shapes other than `isolate` of
/// a named server, loss, bandwidth, latency on a link) and phases' `client_groups`. `kiln validate` and `kiln run`
/// refuse them on any other stack with this one message, before anything starts.
public enum HostsRequirement {
    /// Why `entry` cannot run on the loopback stack (nil: it can): faults between hosts act between network
    /// namespaces, and the loopback stack's servers share one and connect from 127.0.0.1.
    public static func reason(_ entry: FaultScheduleSpec.Entry) -> String? {
        guard let hostFault = entry.hostFault else { return nil }
        let what: String
        switch hostFault {
        case .partition(let shape, _):
            // `isolate` of a named server also works on loopback aliases.
            if entry.shape == "isolate" { return nil }
            what = "partition shape '\(shape.name.rawValue)'"
        case .loss: what = "loss"
        case .bandwidth: what = "bandwidth"
        case .latency: what = "latency on a link"
        }
        return "\(what) acts between hosts in their own network namespaces; this stack runs every server in one "
            + "namespace on loopback aliases, connecting from 127.0.0.1, so no rule could tell the hosts apart "
            + "(use the hosts stack, Scenarios/stacks/embedded-hosts.yaml)"
    }

    /// The first thing of `scenario` its stack cannot run, as `FILE:LINE:COLUMN: FIELD: MESSAGE`; nil when the stack
    /// is a hosts stack or nothing needs one.
    public static func refusal(_ scenario: LoadScenario) -> SpecError? {
        guard scenario.stack.network != .hosts else { return nil }
        for entry in scenario.faults?.entries ?? [] {
            guard let reason = reason(entry) else { continue }
            let (file, line, column) = place(entry.source, fallback: scenario.file.path)
            return SpecError(
                file: file, line: line, column: column, field: "faults", message: "\(entry.name): \(reason)")
        }
        for phase in scenario.phases where !phase.clientGroups.isEmpty {
            let (file, line, column) = place(phase.clientGroupsSource, fallback: scenario.file.path)
            return SpecError(
                file: file, line: line, column: column, field: "phases.\(phase.name).client_groups",
                message: "client_groups need a hosts stack (network: hosts) with client_groups; "
                    + "\(scenario.stack.name) runs its clients on Kiln's own host")
        }
        return nil
    }

    /// `file:line:column` split (the file may itself hold colons).
    static func place(_ source: String, fallback: String) -> (String, Int, Int) {
        let parts = source.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count >= 3, let line = Int(parts[parts.count - 2]), let column = Int(parts[parts.count - 1]) else {
            return (fallback, 0, 0)
        }
        return (parts.dropLast(2).joined(separator: ":"), line, column)
    }
}
