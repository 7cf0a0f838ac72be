import System
import FuseKit
import Glibc
import Synchronization

/// O_PATH fds of recently used inodes, at most `capacity` of them.
///
/// An fd is pinned while an operation uses it, so eviction (second chance,
/// "clock") never closes an fd under a running system call. An fd that could
/// not get a slot (all pinned) or whose inode was forgotten while pinned is
/// closed by its last unpin.
final class FDCache: @unchecked Sendable {
    private struct Ring {
        var slots: [Inode?]
        var hand = 0
        var count = 0
    }
    private let ring: Mutex<Ring>
    private let capacity: Int
    private let mountFD: Int32

    init(capacity: Int, mountFD: Int32) {
        self.capacity = max(capacity, 16)
        self.mountFD = mountFD
        ring = Mutex(Ring(slots: Array(repeating: nil, count: max(capacity, 16))))
    }

    /// Runs `body` with an O_PATH fd of `inode`.
    @inline(__always)
    func withFD<T>(_ inode: Inode, _ body: (Int32) throws(Errno) -> T) throws(Errno) -> T {
        if inode.pinnedFD >= 0 { return try body(inode.pinnedFD) }
        let fd = try pin(inode)
        defer { unpin(inode) }
        return try body(fd)
    }

    /// Offers a freshly opened O_PATH fd of `inode` (from a lookup): the
    /// cache keeps it, or closes it when the inode already has one.
    func offer(_ inode: Inode, fd: Int32) {
        if inode.pinnedFD >= 0 { if fd != inode.pinnedFD { close(fd) }; return }
        let keep = ring.withLock { r -> Bool in
            guard inode.cachedFD < 0 else { inode.recentlyUsed = true; return false }
            inode.cachedFD = fd
            if !insert(inode, &r) { inode.cachedFD = -1; return false }
            return true
        }
        if !keep { close(fd) }
    }

    /// Closes the fd of an inode the kernel forgot.
    func drop(_ inode: Inode) {
        if inode.pinnedFD >= 0 { close(inode.pinnedFD); return }
        let fd = ring.withLock { r -> Int32 in
            if inode.ringSlot >= 0 { r.slots[inode.ringSlot] = nil; r.count -= 1; inode.ringSlot = -1 }
            guard inode.pins == 0 else { return -1 }  // the last unpin closes it
            defer { inode.cachedFD = -1 }
            return inode.cachedFD
        }
        if fd >= 0 { close(fd) }
    }

    /// Closes every cached fd (`forgetNodeState`: no request runs, nothing
    /// is pinned).
    func dropAll() {
        let closing = ring.withLock { r -> [Int32] in
            var fds: [Int32] = []
            for case let inode? in r.slots {
                if inode.cachedFD >= 0 && inode.pins == 0 { fds.append(inode.cachedFD); inode.cachedFD = -1 }
                inode.ringSlot = -1
            }
            r = Ring(slots: Array(repeating: nil, count: capacity))
            return fds
        }
        for fd in closing { close(fd) }
    }

    private func pin(_ inode: Inode) throws(Errno) -> Int32 {
        let cached = ring.withLock { _ -> Int32 in
            guard inode.cachedFD >= 0 else { return -1 }
            inode.pins += 1
            inode.recentlyUsed = true
            return inode.cachedFD
        }
        if cached >= 0 { return cached }
        var handle = inode.handle.storage
        let opened = csys_open_by_handle(mountFD, &handle, Int32(CSYS_O_PATH) | O_CLOEXEC)
        if opened < 0 { throw Errno.current }
        let (fd, surplus) = ring.withLock { r -> (Int32, Int32) in
            inode.pins += 1
            if inode.cachedFD >= 0 { return (inode.cachedFD, opened) }  // another thread won the race
            inode.cachedFD = opened
            _ = insert(inode, &r)
            return (opened, -1)
        }
        if surplus >= 0 { close(surplus) }
        return fd
    }

    private func unpin(_ inode: Inode) {
        let fd = ring.withLock { _ -> Int32 in
            inode.pins -= 1
            guard inode.pins == 0, inode.ringSlot < 0, inode.cachedFD >= 0 else { return -1 }
            defer { inode.cachedFD = -1 }
            return inode.cachedFD
        }
        if fd >= 0 { close(fd) }
    }

    /// Gives `inode` (whose cachedFD is set) a slot, evicting an unpinned,
    /// not recently used inode when full. False when every slot is pinned.
    private func insert(_ inode: Inode, _ r: inout Ring) -> Bool {
        inode.recentlyUsed = true
        if r.count == capacity && !evictOne(&r) { return false }
        while r.slots[r.hand] != nil { r.hand = (r.hand + 1) % capacity }
        r.slots[r.hand] = inode
        inode.ringSlot = r.hand
        r.count += 1
        return true
    }

    private func evictOne(_ r: inout Ring) -> Bool {
        // At most three sweeps: the first two clear every second chance.
        for _ in 0..<(3 * capacity) {
            r.hand = (r.hand + 1) % capacity
            guard let victim = r.slots[r.hand], victim.pins == 0 else { continue }
            if victim.recentlyUsed { victim.recentlyUsed = false; continue }
            close(victim.cachedFD)
            victim.cachedFD = -1
            victim.ringSlot = -1
            r.slots[r.hand] = nil
            r.count -= 1
            return true
        }
        return false
    }
}
