import FaultRules
import Synchronization

/// Per-operation counters for `.faultfs/stats`: requests seen, failed
/// (injected errors), delayed, stalled right now, dropped, shortened, corrupted. Relaxed atomics: no lock
/// on the request path.
final class OpStatistics: Sendable {
    final class Counters: Sendable {
        let seen = Atomic<UInt64>(0)
        let failed = Atomic<UInt64>(0)
        let delayed = Atomic<UInt64>(0)
        let stalledNow = Atomic<Int64>(0)
        let stalledTotal = Atomic<UInt64>(0)
        let dropped = Atomic<UInt64>(0)
        let shortened = Atomic<UInt64>(0)
        let corrupted = Atomic<UInt64>(0)
    }
    private let counters: [Counters] = FaultOp.allCases.map { _ in Counters() }

    @inline(__always) subscript(_ op: FaultOp) -> Counters { counters[Int(op.rawValue)] }

    func reset() {
        for c in counters {
            c.seen.store(0, ordering: .relaxed); c.failed.store(0, ordering: .relaxed)
            c.delayed.store(0, ordering: .relaxed); c.stalledTotal.store(0, ordering: .relaxed)
            c.dropped.store(0, ordering: .relaxed); c.shortened.store(0, ordering: .relaxed)
            c.corrupted.store(0, ordering: .relaxed)
        }
    }

    /// One line per operation, aligned columns.
    func render() -> String {
        let header = ["op", "seen", "failed", "delayed", "stalled_now", "stalled_total", "dropped", "shortened", "corrupted"]
        var out = row(header)
        for op in FaultOp.allCases {
            let c = self[op]
            let values: [Int64] = [
                Int64(c.seen.load(ordering: .relaxed)), Int64(c.failed.load(ordering: .relaxed)),
                Int64(c.delayed.load(ordering: .relaxed)), c.stalledNow.load(ordering: .relaxed),
                Int64(c.stalledTotal.load(ordering: .relaxed)), Int64(c.dropped.load(ordering: .relaxed)),
                Int64(c.shortened.load(ordering: .relaxed)), Int64(c.corrupted.load(ordering: .relaxed)),
            ]
            out += row([op.name] + values.map { String($0) })
        }
        return out
    }

    private func row(_ cells: [String]) -> String {
        var line = cells[0] + String(repeating: " ", count: max(0, 16 - cells[0].count))
        for cell in cells.dropFirst() { line += pad(cell, 14) }
        return line + "\n"
    }
}

private func pad(_ s: String, _ width: Int) -> String {
    s.count >= width ? s : String(repeating: " ", count: width - s.count) + s
}
