// Clocks and sleep. (Not named `Clock`: that is the standard library's protocol.)
import Glibc

public enum SystemClock {
    /// CLOCK_MONOTONIC in nanoseconds: for intervals and deadlines.
    @inlinable public static func monotonicNanoseconds() -> Int64 { nanoseconds(CLOCK_MONOTONIC) }

    /// CLOCK_REALTIME in nanoseconds since the epoch: for timestamps.
    @inlinable public static func realtimeNanoseconds() -> Int64 { nanoseconds(CLOCK_REALTIME) }

    @inlinable static func nanoseconds(_ clock: clockid_t) -> Int64 {
        var ts = timespec()
        clock_gettime(clock, &ts)
        return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
    }

    /// Sleeps the whole of `nanoseconds`, a signal notwithstanding. 0 or less returns at once.
    public static func sleep(nanoseconds: Int64) {
        guard nanoseconds > 0 else { return }
        var request = timespec(tv_sec: Int(nanoseconds / 1_000_000_000), tv_nsec: Int(nanoseconds % 1_000_000_000))
        var remaining = timespec()
        while nanosleep(&request, &remaining) != 0 && errno == EINTR { request = remaining }
    }
}
