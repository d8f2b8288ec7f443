/// Dense slots `0 ..< keyCount` for the keys of a history's micro-ops: slot of op `o` = `keys[o] - keyBase`. When the
/// keys are dense already (their range is within a few times the op count), `keys` is the key column itself (no
/// copy); otherwise keys are renumbered in order of first use through one dictionary.
struct KeySlots {
    let keys: [Int32]
    let keyBase: Int32
    let keyCount: Int

    init(opKey: [Int32]) {
        var low = Int32.max
        var high = Int32.min
        for key in opKey {
            low = min(low, key)
            high = max(high, key)
        }
        if opKey.isEmpty {
            keys = []
            keyBase = 0
            keyCount = 0
        } else if Int(high) - Int(low) < 4 * opKey.count + 1024 {
            keys = opKey
            keyBase = low
            keyCount = Int(high) - Int(low) + 1
        } else {
            var slots: [Int32: Int32] = [:]
            keys = opKey.map { key in
                if let slot = slots[key] { return slot }
                let slot = Int32(slots.count)
                slots[key] = slot
                return slot
            }
            keyBase = 0
            keyCount = slots.count
        }
    }
}
