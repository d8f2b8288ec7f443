import Glibc

/// CLOCK_MONOTONIC in nanoseconds: the one time base of a run (intended times, starts, ends). Thread-safe.
public enum MonotonicClock {
    @inline(__always)
    public static func now() -> UInt64 {
        var spec = timespec()
        clock_gettime(CLOCK_MONOTONIC, &spec)
        return UInt64(spec.tv_sec) &* 1_000_000_000 &+ UInt64(spec.tv_nsec)
    }

    /// Sleeps until `deadline` (monotonic ns) or until `stop()` turns true, checking it at least every 50 ms.
    /// Returns false when stopped before the deadline.
    public static func sleep(until deadline: UInt64, stop: () -> Bool) -> Bool {
        while true {
            if stop() { return false }
            let now = now()
            if now >= deadline { return true }
            let target = min(deadline, now + 50_000_000)
            var spec = timespec(tv_sec: Int(target / 1_000_000_000), tv_nsec: Int(target % 1_000_000_000))
            _ = clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &spec, nil)
        }
    }

    /// Unix time in milliseconds (wall clock, for reports only).
    public static func wallMillis() -> Int64 {
        var spec = timespec()
        clock_gettime(CLOCK_REALTIME, &spec)
        return Int64(spec.tv_sec) * 1000 + Int64(spec.tv_nsec) / 1_000_000
    }
}
