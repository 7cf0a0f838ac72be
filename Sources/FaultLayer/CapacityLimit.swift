import FaultRules
import FuseKit
import Glibc
import System
import Synchronization

/// `capacity SIZE`: the mount behaves like a disk of SIZE bytes. Used space
/// is the backing tree's apparent size, then follows the writes,
/// truncations and deletions seen through the mount; a request that would
/// pass SIZE fails with ENOSPC, and statfs shows SIZE.
///
/// Measuring the tree walks all of it (seconds for a million files), so it
/// runs on a thread of its own, never in a request handler. While it runs
/// the capacity is "measuring": requests are counted but not refused (the
/// limit is not known to be reached), statfs shows the backing file
/// system. `used` then holds only the changes seen through the mount; when
/// the walk ends its total is added. A file changed through the mount while
/// the walk runs is counted twice if the walk reaches it after the change
/// (once in the walk, once as a change), once otherwise: the error is at
/// most the bytes written during the walk.
final class CapacityLimit: ForwardingFileSystem, @unchecked Sendable {
    let inner: any FileSystem
    private let tree: any BackingTree
    private let recorder: InjectionRecorder
    private let limit = Atomic<Int64>(-1)   // -1: off
    private let used = Atomic<Int64>(0)
    private let measured = Atomic<Bool>(false)
    /// Which `capacity` command is current: a walk started by an older one
    /// has its result dropped.
    private let generation = Mutex<UInt64>(0)

    init(wrapping inner: any FileSystem, tree: any BackingTree, recorder: InjectionRecorder) {
        self.inner = inner
        self.tree = tree
        self.recorder = recorder
    }

    // MARK: the model

    /// Whether requests are counted (measuring or ready).
    var isOn: Bool { limit.load(ordering: .relaxed) >= 0 }
    var limitBytes: Int64? { let l = limit.load(ordering: .relaxed); return l >= 0 ? l : nil }
    var usedBytes: Int64 { used.load(ordering: .relaxed) }

    var state: MountStatus.Capacity {
        generation.withLock { _ in
            guard let limit = limitBytes else { return .off }
            return measured.load(ordering: .acquiring) ? .ready(limit: limit, used: usedBytes) : .measuring(limit: limit)
        }
    }

    /// Turns the capacity off (nil) or sets it to `bytes`, measuring the tree
    /// anew on a thread; waits up to `wait` for that measurement (a small
    /// tree is measured at once, so its limit holds when the command returns).
    func set(limit bytes: Int64?, wait: UInt64) {
        let current: UInt64 = generation.withLock { g in
            g += 1
            measured.store(false, ordering: .releasing)
            used.store(0, ordering: .relaxed)
            limit.store(bytes ?? -1, ordering: .relaxed)
            return g
        }
        guard bytes != nil else { return }
        startThread { [self] in
            let walked = tree.usedBytes()
            generation.withLock { g in
                guard g == current else { return }  // a newer `capacity` won
                used.add(walked, ordering: .relaxed)
                measured.store(true, ordering: .releasing)
            }
        }
        let deadline = UInt64(SystemClock.monotonicNanoseconds()) &+ wait
        while !measured.load(ordering: .acquiring) && UInt64(SystemClock.monotonicNanoseconds()) < deadline {
            SystemClock.sleep(nanoseconds: 1_000_000)
        }
    }

    /// The one reservation helper: changes `used` by `delta` bytes around
    /// `body`. Growth is reserved before (ENOSPC, logged, when it would pass
    /// the limit) and given back if `body` fails; a shrink is counted once
    /// `body` succeeds.
    private func charging<T>(_ delta: Int64, _ op: FaultOp, _ caller: Caller, node: NodeID, offset: off_t, length: Int64,
                             _ body: () throws(Errno) -> T) throws(Errno) -> T {
        guard delta > 0 else {
            let result = try body()
            if delta < 0 { used.subtract(-delta, ordering: .relaxed) }
            return result
        }
        guard reserve(delta) else { throw recorder.noSpace(op, caller, node: node, offset: offset, length: length) }
        do throws(Errno) {
            return try body()
        } catch {
            used.subtract(delta, ordering: .relaxed)
            throw error
        }
    }

    /// Reserves `bytes` more; false (nothing reserved) when that would pass
    /// the limit. Not refused while measuring: `used` is not the total yet.
    private func reserve(_ bytes: Int64) -> Bool {
        var current = used.load(ordering: .relaxed)
        while true {
            let l = limit.load(ordering: .relaxed)
            if l >= 0 && measured.load(ordering: .relaxed) && current + bytes > l { return false }
            let (exchanged, original) = used.compareExchange(expected: current, desired: current + bytes, ordering: .relaxed)
            if exchanged { return true }
            current = original
        }
    }

    private func size(_ caller: Caller, _ node: NodeID, handle: UInt64?) -> Int64 {
        Int64((try? inner.getattr(caller, node: node, handle: handle).stat.st_size) ?? 0)
    }

    /// Size of `name` when it is a regular file's last link (what removing
    /// it frees), without keeping the lookup the inner file system counts.
    private func sizeIfLastLink(_ caller: Caller, parent: NodeID, name: FileName) -> Int64 {
        guard let entry = try? inner.lookup(caller, parent: parent, name: name), entry.node != 0 else { return 0 }
        inner.forget(node: entry.node, count: 1)
        let st = entry.attributes
        return (st.st_mode & S_IFMT) == S_IFREG && st.st_nlink == 1 ? Int64(st.st_size) : 0
    }

    // MARK: the requests that change used space

    func setattr(_ caller: Caller, node: NodeID, changes: AttributeChanges) throws(Errno) -> Attributes {
        guard changes.fields.contains(.size), isOn else { return try inner.setattr(caller, node: node, changes: changes) }
        let growth = Int64(changes.size) - size(caller, node, handle: changes.handle)
        return try charging(growth, .truncate, caller, node: node, offset: changes.size, length: 0) { () throws(Errno) in
            try inner.setattr(caller, node: node, changes: changes)
        }
    }

    func unlink(_ caller: Caller, parent: NodeID, name: FileName) throws(Errno) {
        guard isOn else { return try inner.unlink(caller, parent: parent, name: name) }
        let freed = sizeIfLastLink(caller, parent: parent, name: name)
        try charging(-freed, .unlink, caller, node: parent, offset: -1, length: 0) { () throws(Errno) in
            try inner.unlink(caller, parent: parent, name: name)
        }
    }

    func rename(_ caller: Caller, parent: NodeID, name: FileName, newParent: NodeID, newName: FileName, flags: UInt32) throws(Errno) {
        guard isOn, flags == 0 else {
            return try inner.rename(caller, parent: parent, name: name, newParent: newParent, newName: newName, flags: flags)
        }
        let freed = sizeIfLastLink(caller, parent: newParent, name: newName)  // the file the rename replaces
        try charging(-freed, .rename, caller, node: parent, offset: -1, length: 0) { () throws(Errno) in
            try inner.rename(caller, parent: parent, name: name, newParent: newParent, newName: newName, flags: flags)
        }
    }

    func open(_ caller: Caller, node: NodeID, flags: Int32) throws(Errno) -> OpenedFile {
        // With atomic_o_trunc the open itself empties the file: what it held is free.
        guard isOn, flags & O_TRUNC != 0 else { return try inner.open(caller, node: node, flags: flags) }
        let freed = size(caller, node, handle: nil)
        return try charging(-freed, .open, caller, node: node, offset: -1, length: 0) { () throws(Errno) in
            try inner.open(caller, node: node, flags: flags)
        }
    }

    func write(_ caller: Caller, node: NodeID, handle: UInt64, data: WriteSource, offset: off_t, fromWriteback: Bool) throws(Errno) -> Int {
        guard isOn else {
            return try inner.write(caller, node: node, handle: handle, data: data, offset: offset, fromWriteback: fromWriteback)
        }
        let growth = max(0, Int64(offset) + Int64(data.count) - size(caller, node, handle: handle))
        return try charging(growth, fromWriteback ? .writeback : .syncwrite, caller, node: node, offset: offset,
                            length: Int64(data.count)) { () throws(Errno) in
            try inner.write(caller, node: node, handle: handle, data: data, offset: offset, fromWriteback: fromWriteback)
        }
    }

    func fallocate(_ caller: Caller, node: NodeID, handle: UInt64, mode: Int32, offset: off_t, length: off_t) throws(Errno) {
        guard isOn, mode == 0 else {
            return try inner.fallocate(caller, node: node, handle: handle, mode: mode, offset: offset, length: length)
        }
        let growth = max(0, Int64(offset + length) - size(caller, node, handle: handle))
        try charging(growth, .fallocate, caller, node: node, offset: offset, length: Int64(length)) { () throws(Errno) in
            try inner.fallocate(caller, node: node, handle: handle, mode: mode, offset: offset, length: length)
        }
    }

    func copyFileRange(_ caller: Caller, from source: NodeID, sourceHandle: UInt64, sourceOffset: off_t,
                       to destination: NodeID, destinationHandle: UInt64, destinationOffset: off_t,
                       length: Int, flags: Int32) throws(Errno) -> Int {
        let growth = isOn
            ? max(0, Int64(destinationOffset) + Int64(length) - size(caller, destination, handle: destinationHandle)) : 0
        return try charging(growth, .copyFileRange, caller, node: destination, offset: destinationOffset,
                            length: Int64(length)) { () throws(Errno) in
            try inner.copyFileRange(caller, from: source, sourceHandle: sourceHandle, sourceOffset: sourceOffset,
                                    to: destination, destinationHandle: destinationHandle,
                                    destinationOffset: destinationOffset, length: length, flags: flags)
        }
    }

    func statfs(_ caller: Caller, node: NodeID) throws(Errno) -> statvfs {
        var st = try inner.statfs(caller, node: node)
        guard case .ready(let limit, let used) = state else { return st }
        let unit = UInt64(max(st.f_frsize, 1))
        let free = UInt64(max(0, limit - used))
        st.f_blocks = fsblkcnt_t(UInt64(limit) / unit)
        st.f_bfree = fsblkcnt_t(free / unit)
        st.f_bavail = st.f_bfree
        return st
    }
}
