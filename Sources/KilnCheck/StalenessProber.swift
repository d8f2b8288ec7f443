import Foundation
import KilnData
import KilnCore
import KilnScenario
import KilnStores
import Synchronization

/// Black-box staleness probes (`blackbox.staleness:`): while `kiln run` writes the entry store, the prober takes a
/// sample of the entry writes acknowledged `ok` (`sample` per second, the first ack at or after each sampling tick;
/// with `posted: approved` only approved transactions, since a declined one must never appear downstream) and, for
/// every place, polls a point lookup of that txn_id every `poll` until the place shows it or `timeout` passes.
/// Staleness of the path `entry→place` = the time of the first lookup answer that shows the transaction − the
/// entry's ack time, both on the monotonic clock; its resolution is the poll interval plus one lookup's round trip,
/// and it is 0 when the place already held the transaction by the ack.
///
/// Threads: one OS thread per probed place (it owns the place's connection and blocks only itself; a dead store
/// stalls only its own path); `acknowledged` runs on the load's workers and only does an atomic compare-exchange and,
/// for a sampled ack, a short locked append. Load on each place: at most one lookup query per `poll` (100 ms for a
/// graph, whose lookup scans the relation), naming at most 500 pending txn_ids.
///
/// A probe still pending at its timeout is `never visible` when the place's last lookup succeeded, `unprobed` when
/// the place could not be asked then (store down, table not there yet): an unreachable place is not reported as one
/// that lost writes. Thread-safe.
public final class StalenessProber: AckTap {
    public let spec: BlackBoxSpec
    public let staleness: BlackBoxSpec.Staleness
    private let entryOperations: Set<String>
    private let dataset: Dataset
    private let context: ClientContext
    private let periodNanos: UInt64
    private let lanes: [ProbeLane]
    private let nextDue = Atomic<UInt64>(0)
    private let sampled = Atomic<Int64>(0)
    private let accepting = Atomic<Bool>(true)

    /// - Parameter spec: a black-box spec with a `staleness:` block.
    public init(spec: BlackBoxSpec, context: ClientContext) {
        precondition(spec.staleness != nil, "StalenessProber needs blackbox.staleness")
        self.spec = spec
        let staleness = spec.staleness!
        self.staleness = staleness
        self.context = context
        dataset = context.dataset
        let entry = BlackBoxPlaces.entryPlace(spec.entry)
        entryOperations = RowPlace.all.first { $0.id == entry }?.writtenBy ?? []
        periodNanos = UInt64(max(1, (1e9 / staleness.sample).rounded()))
        lanes = spec.places.map { place in
            ProbeLane(
                place: place, path: "\(entry)→\(place.id)", slo: staleness.slo(for: place),
                timeout: staleness.timeout,
                poll: place.store == .falkordb ? max(staleness.poll, .milliseconds(100)) : staleness.poll,
                noProbe: StalenessLookups.noProbeReason(place))
        }
    }

    /// Starts one probe thread per place that can be probed; each opens its lookup (retried every second until it
    /// opens) and then waits for samples.
    public func start() {
        for lane in lanes where lane.noProbe == nil {
            let context = self.context
            let thread = Thread { lane.run(context: context) }
            thread.name = "kiln-staleness-\(lane.place.store.rawValue)"
            thread.start()
        }
    }

    /// True once every probed place's lookup is open (tables resolved, connections up), or false after `seconds`.
    public func ready(within seconds: Double) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if lanes.allSatisfy({ $0.noProbe != nil || $0.isReady }) { return true }
            Thread.sleep(forTimeInterval: 0.02)
        }
        return false
    }

    public func acknowledged(operation: String, rows: Range<Int64>, ackNanos: UInt64) {
        guard entryOperations.contains(operation) else { return }
        let due = nextDue.load(ordering: .relaxed)
        guard ackNanos >= due, accepting.load(ordering: .relaxed) else { return }
        let approvedOnly = spec.posted == .approved
        guard let row = rows.prefix(64).first(where: { !approvedOnly || !dataset.transaction($0).declined }) else {
            return
        }
        // One winner per sampling tick, even when several workers ack at once. Ticks keep to their grid (so the rate
        // is `sample` per second whenever acks come faster), restarting at this ack after a pause in the acks.
        let next = due &+ periodNanos > ackNanos ? due &+ periodNanos : ackNanos &+ periodNanos
        guard nextDue.compareExchange(expected: due, desired: next, ordering: .relaxed).exchanged else { return }
        let sample = ProbeLane.Sample(txnID: dataset.transaction(row).txnID, ackNanos: ackNanos)
        _ = sampled.wrappingAdd(1, ordering: .relaxed)
        for lane in lanes where lane.noProbe == nil { lane.submit(sample) }
    }

    /// Stops sampling and waits until every pending probe is visible or timed out (the final convergence wait: at
    /// most the timeout plus one lookup), or until `abandon()` turns true (then pending probes count `abandoned`).
    /// Call once, after the last phase.
    public func finish(abandon: () -> Bool) -> BlackBoxStalenessReport {
        accepting.store(false, ordering: .relaxed)
        for lane in lanes { lane.end() }
        for lane in lanes where lane.noProbe == nil {
            while !lane.waitDone(seconds: 0.1) {
                if abandon() { lane.abandon() }
            }
        }
        return BlackBoxStalenessReport(
            entry: BlackBoxPlaces.entryPlace(spec.entry), sample: staleness.sample,
            pollMs: Self.millis(staleness.poll), timeoutMs: Self.millis(staleness.timeout),
            sampled: sampled.load(ordering: .relaxed), paths: lanes.map { $0.result() })
    }

    static func millis(_ duration: Duration) -> Double {
        duration.milliseconds
    }
}

/// One place's probes: an inbox the prober fills, the thread that polls the place, and what it measured.
/// Thread-safe: the inbox and the outcome are behind mutexes, the flags atomic; `run` is called on one thread.
final class ProbeLane: Sendable {
    struct Sample: Sendable {
        var txnID: Int64
        var ackNanos: UInt64
    }

    struct Outcome {
        var latenciesMs: [Double] = []
        var neverVisible: [Int64] = []
        var unprobed: Int64 = 0
        var abandoned: Int64 = 0
        var probes: Int64 = 0
        var lookupErrors: Int64 = 0
        var lastError: String?
        var probe: String?
    }

    let place: BlackBoxSpec.Place
    let path: String
    let noProbe: String?
    private let sloMs: Double
    private let timeoutNanos: UInt64
    private let pollNanos: UInt64
    private let inbox = Mutex<[Sample]>([])
    private let outcome = Mutex(Outcome())
    private let ended = Atomic<Bool>(false)
    private let abandoned = Atomic<Bool>(false)
    private let opened = Atomic<Bool>(false)
    private let finished = Atomic<Bool>(false)

    init(place: BlackBoxSpec.Place, path: String, slo: Duration, timeout: Duration, poll: Duration, noProbe: String?) {
        self.place = place
        self.path = path
        self.noProbe = noProbe
        sloMs = StalenessProber.millis(slo)
        timeoutNanos = UInt64(StalenessProber.millis(timeout) * 1e6)
        pollNanos = UInt64(StalenessProber.millis(poll) * 1e6)
    }

    var isReady: Bool { opened.load(ordering: .acquiring) }

    func submit(_ sample: Sample) { inbox.withLock { $0.append(sample) } }
    func end() { ended.store(true, ordering: .releasing) }
    func abandon() { abandoned.store(true, ordering: .releasing) }
    /// True once `run` returned; waits at most `seconds` for it.
    func waitDone(seconds: Double) -> Bool {
        let deadline = MonotonicClock.now() &+ UInt64(seconds * 1e9)
        _ = MonotonicClock.sleep(until: deadline) { self.finished.load(ordering: .acquiring) }
        return finished.load(ordering: .acquiring)
    }

    /// The probe loop; returns once ended and nothing is pending (or abandoned).
    func run(context: ClientContext) {
        defer { finished.store(true, ordering: .releasing) }
        var lookup: (any VisibilityLookup)?
        var pending: [Sample] = []
        var lastOpenAttempt: UInt64?
        var lastRoundOK = false
        while true {
            let round = MonotonicClock.now()
            let finishing = ended.load(ordering: .acquiring)
            let arrived = inbox.withLock { samples in
                defer { samples.removeAll() }
                return samples
            }
            pending += arrived
            if !arrived.isEmpty { outcome.withLock { $0.probes += Int64(arrived.count) } }
            if abandoned.load(ordering: .acquiring) {
                let count = Int64(pending.count)
                outcome.withLock { $0.abandoned += count }
                break
            }
            if finishing && pending.isEmpty { break }
            if lookup == nil, lastOpenAttempt.map({ round &- $0 >= 1_000_000_000 }) ?? true {
                lastOpenAttempt = round
                do {
                    let opened = try StalenessLookups.open(place, context: context)
                    lookup = opened
                    outcome.withLock { $0.probe = opened.description }
                    self.opened.store(true, ordering: .releasing)
                } catch {
                    noteError(error)
                    lastRoundOK = false
                }
            }
            // A probe past its timeout: never visible if the place answered its last lookup, else unprobed.
            // (An ack later than `round` arrived after this round began: not expired.)
            let timeout = timeoutNanos
            func isExpired(_ sample: Sample) -> Bool { round > sample.ackNanos && round - sample.ackNanos > timeout }
            let expired = pending.filter(isExpired)
            if !expired.isEmpty {
                pending.removeAll(where: isExpired)
                let ok = lastRoundOK
                outcome.withLock { result in
                    if ok {
                        result.neverVisible += expired.map(\.txnID)
                    } else {
                        result.unprobed += Int64(expired.count)
                    }
                }
            }
            if let current = lookup, !pending.isEmpty {
                do {
                    var seen: [Int64: UInt64] = [:]
                    var start = 0
                    while start < pending.count {
                        let chunk = pending[start..<min(start + 500, pending.count)].map(\.txnID)
                        let found = try current.visible(chunk)
                        let answered = MonotonicClock.now()
                        for id in found { seen[id] = answered }
                        start += 500
                    }
                    let latencies = pending.compactMap { sample in
                        seen[sample.txnID].map { Double($0 > sample.ackNanos ? $0 - sample.ackNanos : 0) / 1e6 }
                    }
                    if !latencies.isEmpty { outcome.withLock { $0.latenciesMs += latencies } }
                    pending.removeAll { seen[$0.txnID] != nil }
                    lastRoundOK = true
                } catch {
                    noteError(error)
                    lastRoundOK = false
                    current.close()
                    lookup = nil
                }
            }
            _ = MonotonicClock.sleep(until: round &+ pollNanos) { self.abandoned.load(ordering: .acquiring) }
        }
        lookup?.close()
    }

    private func noteError(_ error: any Error) {
        outcome.withLock {
            $0.lookupErrors += 1
            $0.lastError = "\(error)"
        }
    }

    func result() -> BlackBoxStalenessReport.Path {
        outcome.withLock { result in
            let sorted = result.latenciesMs.sorted()
            func percentile(_ p: Double) -> Double? {
                sorted.isEmpty ? nil : sorted[max(0, Int((p * Double(sorted.count)).rounded(.up)) - 1)]
            }
            return BlackBoxStalenessReport.Path(
                place: place.id, path: path, probe: noProbe == nil ? result.probe : nil, noProbe: noProbe,
                sloMs: sloMs, probes: result.probes, visible: Int64(sorted.count), p50Ms: percentile(0.5),
                p99Ms: percentile(0.99), maxMs: sorted.last, neverVisible: Int64(result.neverVisible.count),
                neverVisibleTxnIds: Array(result.neverVisible.sorted().prefix(PlaceResult.keptPerKind)),
                unprobed: result.unprobed, abandoned: result.abandoned, lookupErrors: result.lookupErrors,
                lastError: result.lastError)
        }
    }
}
