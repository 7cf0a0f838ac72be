import Synchronization

/// `capacity SIZE`: the mount behaves like a disk of SIZE bytes. Used space
/// starts as the backing tree's apparent size and follows the writes,
/// truncations and deletions seen through the mount.
final class CapacityModel: Sendable {
    private let limit = Atomic<Int64>(-1)   // -1: off
    private let used = Atomic<Int64>(0)

    var isOn: Bool { limit.load(ordering: .relaxed) >= 0 }
    var limitBytes: Int64? { let l = limit.load(ordering: .relaxed); return l >= 0 ? l : nil }
    var usedBytes: Int64 { used.load(ordering: .relaxed) }

    func set(limit bytes: Int64?, used current: Int64) {
        used.store(current, ordering: .relaxed)
        limit.store(bytes ?? -1, ordering: .relaxed)
    }

    /// Reserves `bytes` more; false (nothing reserved) when that would pass the limit.
    func reserve(_ bytes: Int64) -> Bool {
        guard bytes > 0 else { return true }
        var current = used.load(ordering: .relaxed)
        while true {
            let l = limit.load(ordering: .relaxed)
            if l >= 0 && current + bytes > l { return false }
            let (exchanged, original) = used.compareExchange(expected: current, desired: current + bytes, ordering: .relaxed)
            if exchanged { return true }
            current = original
        }
    }

    func free(_ bytes: Int64) {
        guard bytes > 0 else { return }
        used.subtract(bytes, ordering: .relaxed)
    }
}
