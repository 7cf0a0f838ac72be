import FuseKit
import Glibc
import Synchronization

/// Holds stalled requests until `release` (all, or one rule's), their
/// timeout, or the end of the session. Each waiter polls: a stall must never
/// need the daemon's other threads to make progress.
final class StallGate: Sendable {
    private struct Epochs {
        var all: UInt64 = 0
        var byRule: [String: UInt64] = [:]
    }
    private let epochs = Mutex(Epochs())

    enum Outcome { case released, timedOut, sessionClosing }

    func wait(ruleID: String, timeoutNanoseconds: UInt64?, session: SessionState?) -> Outcome {
        let start = epochs.withLock { ($0.all, $0.byRule[ruleID] ?? 0) }
        let deadline = timeoutNanoseconds.map { monotonicNanoseconds() &+ $0 }
        while true {
            let now = epochs.withLock { ($0.all, $0.byRule[ruleID] ?? 0) }
            if now != start { return .released }
            if session?.isClosing == true { return .sessionClosing }
            if let deadline, monotonicNanoseconds() >= deadline { return .timedOut }
            usleep(5_000)
        }
    }

    /// Lets go every stalled request (id nil) or those of one rule.
    func release(ruleID: String?) {
        epochs.withLock { e in
            if let ruleID { e.byRule[ruleID, default: 0] &+= 1 } else { e.all &+= 1 }
        }
    }
}

func monotonicNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

func realtimeNanoseconds() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
}

func sleepNanoseconds(_ ns: UInt64) {
    var req = timespec(tv_sec: Int(ns / 1_000_000_000), tv_nsec: Int(ns % 1_000_000_000))
    var rem = timespec()
    while nanosleep(&req, &rem) != 0 && errno == EINTR { req = rem }
}
