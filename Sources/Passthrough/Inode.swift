import System
import FuseKit
import Glibc
import Synchronization

/// One inode of the backing tree that the kernel knows by a node id.
///
/// The node id handed to the kernel is this object's address (the object is
/// retained while the kernel's lookup count is above zero), so turning a node
/// id back into an inode costs nothing and takes no lock.
///
/// No fd is held per inode: the inode keeps its file handle
/// (name_to_handle_at) and `FDCache` keeps O_PATH fds for a bounded set of
/// recently used inodes, reopening the others by handle. That is what keeps a
/// tree of a million files within RLIMIT_NOFILE.
final class Inode: @unchecked Sendable {
    let key: InodeKey
    /// The backing file's handle; empty when the backing file system has none
    /// (then `pinnedFD` holds an O_PATH fd for the inode's whole life).
    let handle: FileHandleBytes
    let pinnedFD: Int32
    let isDirectory: Bool

    // Guarded by InodeTable's lock.
    var lookups: UInt64 = 0

    // Guarded by FDCache's lock.
    var cachedFD: Int32 = -1
    var ringSlot = -1          // -1: the fd is not in the ring (closed at last unpin)
    var pins: Int32 = 0
    var recentlyUsed = false

    init(key: InodeKey, handle: FileHandleBytes, pinnedFD: Int32, isDirectory: Bool) {
        self.key = key; self.handle = handle; self.pinnedFD = pinnedFD; self.isDirectory = isDirectory
    }

    var nodeID: NodeID { ObjectAddress.integer(ObjectAddress.of(self)) }
}

/// Identifies a backing inode: (st_ino, st_dev).
struct InodeKey: Hashable {
    let ino: UInt64
    let dev: UInt64
    init(_ st: stat) { ino = UInt64(st.st_ino); dev = UInt64(st.st_dev) }
}

/// A `struct file_handle` as bytes, inline (no heap allocation per inode).
struct FileHandleBytes {
    var storage = csys_file_handle()
    var isEmpty: Bool { storage.handle_bytes == 0 }
    static let empty = FileHandleBytes()

    /// The handle of the file `fd` refers to (an O_PATH fd is fine).
    static func of(fd: Int32) -> FileHandleBytes? {
        var h = FileHandleBytes()
        guard csys_name_to_handle(fd, "", &h.storage, Int32(CSYS_AT_EMPTY_PATH)) >= 0 else { return nil }
        return h
    }

    static func == (a: FileHandleBytes, b: FileHandleBytes) -> Bool {
        guard a.storage.handle_bytes == b.storage.handle_bytes, a.storage.handle_type == b.storage.handle_type else { return false }
        var x = a.storage, y = b.storage
        return memcmp(&x.f_handle, &y.f_handle, Int(a.storage.handle_bytes)) == 0
    }
}

/// Node id ↔ inode, with the kernel's lookup counts.
///
/// Lock order: InodeTable's lock, then FDCache's lock; never the reverse.
final class InodeTable: @unchecked Sendable {
    private let byKey = Mutex<[InodeKey: Inode]>([:])
    let root: Inode

    init(root: Inode) {
        self.root = root
        root.lookups = 1 << 62  // never forgotten
    }

    @inline(__always) func inode(_ node: NodeID) -> Inode {
        if node == rootNodeID { return root }
        return ObjectAddress.object(at: ObjectAddress.address(node), as: Inode.self)
    }

    func node(of inode: Inode) -> NodeID { inode === root ? rootNodeID : inode.nodeID }

    /// Counts one kernel lookup of the backing inode `st`, creating the
    /// table entry on first sight. `make` builds the inode when it is new or
    /// when the old entry's handle is stale (st_ino reused after a delete).
    func remember(_ st: stat, handle: FileHandleBytes?, make: () -> Inode) -> Inode {
        let key = InodeKey(st)
        if key == root.key { return root }
        return byKey.withLock { table in
            if let existing = table[key], handle == nil || existing.handle.isEmpty || existing.handle == handle! {
                existing.lookups += 1
                return existing
            }
            let fresh = make()
            fresh.lookups = 1
            _ = ObjectAddress.retain(fresh)  // the kernel's reference
            table[key] = fresh
            return fresh
        }
    }

    /// Drops `count` kernel lookups; returns the inode when that was the last
    /// one, for the caller to release its fd and memory.
    func forget(_ node: NodeID, count: UInt64) -> Inode? {
        // Node 0 is "no inode" (a names-only readdirplus entry): nothing to forget.
        if node == rootNodeID || node == 0 { return nil }
        let inode = inode(node)
        let (gone, shrunk): (Bool, Bool) = byKey.withLock { table in
            inode.lookups -= min(count, inode.lookups)
            guard inode.lookups == 0 else { return (false, false) }
            guard table[inode.key] === inode else { return (true, false) }
            table[inode.key] = nil
            // A dictionary never shrinks by itself: rebuild it after a mass delete.
            guard table.capacity > 4096 && table.count < table.capacity / 8 else { return (true, false) }
            table = Dictionary(minimumCapacity: table.count * 2).merging(table) { a, _ in a }
            return (true, true)
        }
        guard gone else { return nil }
        ObjectAddress.release(ObjectAddress.of(inode), as: Inode.self)
        // ...and hand the freed inodes' memory back to the system, or RSS
        // stays at its peak after a million files come and go.
        if shrunk { _ = malloc_trim(0) }
        return inode
    }

    /// Every inode but the root.
    func all() -> [Inode] { byKey.withLock { Array($0.values) } }

    /// Forgets every inode but the root, as if the kernel had sent the last
    /// forget of each (it sends none when its connection is aborted);
    /// returns them for the caller to release their fds. No request may run.
    func forgetAll() -> [Inode] {
        let all = byKey.withLock { table in
            defer { table = [:] }
            return Array(table.values)
        }
        for inode in all {
            inode.lookups = 0
            ObjectAddress.release(ObjectAddress.of(inode), as: Inode.self)
        }
        return all
    }
}
