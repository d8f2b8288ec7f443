import Foundation

/// The live keys of a transactional workload (Elle's `:max-writes-per-key`): `slots` live keys, each retired after
/// `maxWritesPerKey` writes and replaced by a fresh key (`slots`, `slots + 1`, …), so lists stay short and
/// registers get new histories even under Zipf. Without a maximum the keys are `0 ..< slots` forever.
///
/// Guarantees: no key is handed out for writing more than `maxWritesPerKey` times (planned writes count, whether or
/// not their transaction commits); every key is below `keyBound(writes:)` for at most that many writes in all.
/// Thread-safe: one lock, shared by every worker thread of a run. @unchecked Sendable: all state is behind `lock`.
public final class RetiringKeySpace: @unchecked Sendable {
    public let slots: Int
    public let maxWritesPerKey: Int?
    private var live: [Int]
    private var writes: [Int]
    private var nextKey: Int
    private let lock = NSLock()

    public init(slots: Int, maxWritesPerKey: Int?) {
        self.slots = max(1, slots)
        self.maxWritesPerKey = maxWritesPerKey
        live = Array(0..<max(1, slots))
        writes = Array(repeating: 0, count: max(1, slots))
        nextKey = max(1, slots)
    }

    /// The key a read of `slot` uses now.
    public func keyForRead(slot: Int) -> Int {
        lock.lock()
        defer { lock.unlock() }
        return live[slot]
    }

    /// The key a write of `slot` uses; counts the write and retires the key when it reached the maximum.
    public func keyForWrite(slot: Int) -> Int {
        lock.lock()
        defer { lock.unlock() }
        let key = live[slot]
        writes[slot] += 1
        if let maxWritesPerKey, writes[slot] >= maxWritesPerKey {
            live[slot] = nextKey
            nextKey += 1
            writes[slot] = 0
        }
        return key
    }

    /// An upper bound of the keys (exclusive) a run of at most `writes` writes uses.
    public func keyBound(writes: Int) -> Int {
        guard let maxWritesPerKey, maxWritesPerKey > 0 else { return slots }
        return slots + writes / maxWritesPerKey + 1
    }
}
