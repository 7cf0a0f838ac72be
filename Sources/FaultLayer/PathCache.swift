import FaultRules
import FuseKit
import Synchronization

/// Paths of nodes, remembered while path rules are armed: resolving one asks
/// the kernel (readlink of /proc/self/fd/N), which would otherwise cost every
/// checked request several microseconds. Any rename, unlink or rmdir may move
/// names, so it forgets everything then; it is small and cheap to refill.
/// Its lock is a leaf, never held while resolving (lock order: FaultLayer.swift).
final class PathCache: Sendable {
    private let paths = ReadMostly<[NodeID: String]>([:])
    /// False while empty: then forgetting takes no lock (forgets and unlinks
    /// are frequent, path rules rare).
    private let holdsPaths = Atomic<Bool>(false)
    private static let capacity = 65_536

    func path(of node: NodeID, resolve: () -> String?) -> String? {
        if let known = paths.read({ $0[node] }) { return known }
        guard let resolved = resolve() else { return nil }
        paths.write { table in
            if table.count >= Self.capacity { table.removeAll(keepingCapacity: true) }
            table[node] = resolved
            holdsPaths.store(true, ordering: .relaxed)
        }
        return resolved
    }

    func forgetAll() {
        guard holdsPaths.load(ordering: .relaxed) else { return }
        paths.write { table in
            table.removeAll(keepingCapacity: true)
            holdsPaths.store(false, ordering: .relaxed)
        }
    }

    func forget(_ node: NodeID) {
        guard holdsPaths.load(ordering: .relaxed) else { return }
        paths.write { _ = $0.removeValue(forKey: node) }
    }
}
