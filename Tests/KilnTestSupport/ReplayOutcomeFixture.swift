import KilnReplay

/// A run's outcome as the replay judge reads it, built in memory (ShrinkTests, ReplayStackGuardTests).
public enum ReplayOutcomeFixture {
    public static func outcome(
        sites: [AnomalySite: Int64] = [:], thresholds: Set<String> = [], checked: Bool = true,
        keys: [AnomalySite: Set<String>] = [:]
    ) -> RunOutcome {
        RunOutcome(
            judgement: checked ? .checked(validity: sites.isEmpty ? "valid" : "invalid") : .notChecked(reason: "--no-check given"),
            anomalies: sites, keys: keys, failedThresholds: thresholds, failedDrills: [], unknownPlaces: [],
            interrupted: false, verdict: sites.isEmpty ? "passed" : "anomaly")
    }

    public static let lost = AnomalySite(place: "postgres.rows", kind: "lost")
}
