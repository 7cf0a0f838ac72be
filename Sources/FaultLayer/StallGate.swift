import FuseKit
import Glibc
import System
import Synchronization

/// Holds stalled requests until `release` (all, or one rule's), their
/// timeout, or the end of the session. Each waiter polls: a stall must never
/// need the daemon's other threads to make progress.
///
/// Releases are numbered. A request takes a `ticket` (the number so far)
/// before the engine picks its rule, and waits for a later release of all or
/// of its rule: a release that comes between the pick and the wait (while
/// the stall is logged) still counts, although the rule is gone by then.
final class StallGate: Sendable {
    private let released = Atomic<UInt64>(0)
    private struct Latest {
        var all: UInt64 = 0
        var byRule: [String: UInt64] = [:]
    }
    private let latest = Mutex(Latest())

    enum Outcome { case released, timedOut, sessionClosing }

    /// Take before the rule engine decides.
    func ticket() -> UInt64 { released.load(ordering: .acquiring) }

    func wait(ruleID: String, ticket: UInt64, timeoutNanoseconds: UInt64?, session: SessionState?) -> Outcome {
        let deadline = timeoutNanoseconds.map { UInt64(SystemClock.monotonicNanoseconds()) &+ $0 }
        while true {
            let last = latest.withLock { max($0.all, $0.byRule[ruleID] ?? 0) }
            if last > ticket { return .released }
            if session?.isClosing == true { return .sessionClosing }
            if let deadline, UInt64(SystemClock.monotonicNanoseconds()) >= deadline { return .timedOut }
            usleep(5_000)
        }
    }

    /// Lets go every stalled request (id nil) or those of one rule.
    func release(ruleID: String?) {
        latest.withLock { l in
            let number = released.add(1, ordering: .releasing).newValue
            if let ruleID { l.byRule[ruleID] = number } else { l.all = number }
        }
    }
}
