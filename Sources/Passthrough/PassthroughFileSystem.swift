import System
import FuseKit
import Glibc

/// Mirrors a backing directory, operation for operation, with the kernel's
/// page cache in front. Knows nothing of faults.
///
/// - Inodes: node id = address of an `Inode`, keyed by (st_ino, st_dev);
///   fds: `FDCache` (bounded), reopening by file handle.
/// - Open files: the handle given to the kernel is the backing fd itself;
///   open directories: a retained `DirectoryHandle`.
/// - The daemon never follows a symlink of the backing tree: every name is
///   resolved one component at a time relative to an fd, with O_NOFOLLOW /
///   AT_SYMLINK_NOFOLLOW, and inodes are reopened by handle.
/// - New inodes are created as the calling user and group (see `asCaller`).
public final class PassthroughFileSystem: FileSystem, @unchecked Sendable {
    let options: PassthroughOptions
    let inodes: InodeTable
    let fds: FDCache
    let mountFD: Int32
    /// The root's backing path as the kernel prints it (for `backingPath`).
    let rootPath: String
    private let daemonUID = geteuid(), daemonGID = getegid()
    // Set once by `initialize`, before any request.
    private var writebackCache = false
    /// The kernel enforces and caches POSIX ACLs (FUSE_POSIX_ACL); the
    /// backing file system stores them and inherits default ACLs.
    private var posixACLs = false
    private var session: SessionState?
    /// The files and directories open now, when `options.tracksOpenFiles`.
    let openHandles: OpenHandles?
    /// Whether the backing file system stores POSIX ACLs (probed at start).
    let backingHasACLs: Bool

    /// `root`: an fd of the backing directory opened before mounting (an
    /// in-place mount then still reaches the files underneath). Takes it over.
    public init(root: Int32, options: PassthroughOptions) throws(Errno) {
        self.options = options
        var st = stat()
        try sysCall { fstatat(root, "", &st, Int32(CSYS_AT_EMPTY_PATH) | AT_SYMLINK_NOFOLLOW) }
        guard (st.st_mode & S_IFMT) == S_IFDIR else { throw .ENOTDIR }
        let handle = FileHandleBytes.of(fd: root)
        // open_by_handle_at wants a real fd (not O_PATH) on the backing mount.
        mountFD = try sysCall { openat(root, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
        inodes = InodeTable(root: Inode(key: InodeKey(st), handle: handle ?? .empty, pinnedFD: root, isDirectory: true))
        // Without handles every inode pins an O_PATH fd (libfuse's examples' way).
        fds = FDCache(capacity: handle == nil ? 0 : options.fdCacheCapacity, mountFD: mountFD)
        rootPath = (try? procLink(root)) ?? ""
        openHandles = options.tracksOpenFiles ? OpenHandles() : nil
        // Through the fd: an in-place mount may already cover the path.
        backingHasACLs = CSystem.getxattr("/proc/self/fd/\(root)", "system.posix_acl_access", nil, 0) >= 0 || Errno.current == .ENODATA
        umask(0)  // the caller's umask is applied by the kernel, or by `creationMode`
    }

    public func initialize(_ conn: inout Connection, session: SessionState) {
        var want: Capabilities = [.asyncRead, .parallelDirops, .asyncDIO, .atomicOTrunc, .readdirplus, .readdirplusAuto]
        if options.writebackCache { want.insert(.writebackCache) }
        if options.splice { want.formUnion([.spliceRead, .spliceWrite, .spliceMove]) }
        if options.aggressiveCaching { want.insert(.cacheSymlinks) } else { want.insert(.autoInvalData) }
        // ACLs where the backing file system has them: the kernel checks
        // access with them, and leaves the umask to us (a default ACL
        // replaces it), see `creationMode`.
        if options.posixACLs && backingHasACLs { want.formUnion([.posixACL, .dontMask]) }
        // Not asked: posix/flock locks (the kernel then keeps locks itself,
        // correct for everything that goes through this mount) and
        // handle_killpriv (the kernel clears setuid bits, as on ext4).
        conn.want = want.intersection(conn.capable)
        writebackCache = conn.want.contains(.writebackCache)
        posixACLs = conn.want.contains(.posixACL)
        self.session = session
    }

    /// Whether a write, truncation or O_TRUNC open by `caller` must clear
    /// setuid/setgid bits here: the kernel leaves that to us when it runs the
    /// connection with FUSE_HANDLE_KILLPRIV_V2. Root (CAP_FSETID) keeps them.
    @inline(__always) private func mustKillPrivileges(_ caller: Caller) -> Bool {
        caller.uid != 0 && session?.fileSystemKillsPrivileges == true
    }

    /// Clears setuid, and setgid unless the file is not group-executable and
    /// `caller` is in its group, as a local file system does when someone
    /// without CAP_FSETID modifies the file (setattr_should_drop_sgid).
    private func dropSetIDBits(_ fd: Int32, _ caller: Caller, chmodAt: (mode_t) throws(Errno) -> Void) throws(Errno) {
        var st = stat()
        try sysCall { fstatat(fd, "", &st, Int32(CSYS_AT_EMPTY_PATH) | AT_SYMLINK_NOFOLLOW) }
        guard (st.st_mode & S_IFMT) == S_IFREG else { return }
        var mode = st.st_mode & 0o7777
        if mode & S_ISUID != 0 { mode &= ~S_ISUID }
        if mode & S_ISGID != 0 && (mode & S_IXGRP != 0 || !isInGroup(caller, st.st_gid)) { mode &= ~S_ISGID }
        if mode != st.st_mode & 0o7777 { try chmodAt(mode) }
    }

    public func destroy() { forgetNodeState() }

    // MARK: helpers

    private var timeout: Double { options.cacheTimeout }

    /// Whether `name` under `parent` is one of `hiddenRootNames`.
    @inline(__always) private func isHidden(_ parent: NodeID, _ name: FileName) -> Bool {
        parent == rootNodeID && !options.hiddenRootNames.isEmpty && isHiddenRootName(name.cString)
    }

    private func isHiddenRootName(_ name: UnsafePointer<CChar>) -> Bool {
        options.hiddenRootNames.contains { $0.withCString { strcmp($0, name) == 0 } }
    }

    /// Creating or renaming to a hidden name: refused.
    @inline(__always) private func refuseHidden(_ parent: NodeID, _ name: FileName) throws(Errno) {
        if isHidden(parent, name) { throw .EPERM }
    }

    @inline(__always) private func inode(_ node: NodeID) -> Inode { inodes.inode(node) }

    @discardableResult @inline(__always) private func withFD<T>(_ node: NodeID, _ body: (Int32) throws(Errno) -> T) throws(Errno) -> T {
        try fds.withFD(inode(node), body)
    }

    /// Looks `name` up under the directory fd `dirfd` and counts one kernel
    /// lookup of it.
    private func entry(dirfd: Int32, name: UnsafePointer<CChar>) throws(Errno) -> Entry {
        let fd = try sysCall { openat(dirfd, name, Int32(CSYS_O_PATH) | O_NOFOLLOW | O_CLOEXEC) }
        do throws(Errno) {
            var st = stat()
            try sysCall { fstatat(fd, "", &st, Int32(CSYS_AT_EMPTY_PATH) | AT_SYMLINK_NOFOLLOW) }
            let inode = try remember(st, fd: fd)
            fds.offer(inode, fd: fd)
            return Entry(node: inodes.node(of: inode), attributes: st, attributesTimeout: timeout, entryTimeout: timeout)
        } catch {
            close(fd)
            throw error
        }
    }

    /// The entry of a file just created and opened as `fd` (no second open).
    private func entry(openFD fd: Int32) throws(Errno) -> Entry {
        var st = stat()
        try sysCall { fstat(fd, &st) }
        let inode = try remember(st, fd: fd)
        return Entry(node: inodes.node(of: inode), attributes: st, attributesTimeout: timeout, entryTimeout: timeout)
    }

    private func remember(_ st: stat, fd: Int32) throws(Errno) -> Inode {
        let handle = FileHandleBytes.of(fd: fd)
        let isDirectory = (st.st_mode & S_IFMT) == S_IFDIR
        var pinned: Int32 = -1
        if handle == nil {
            guard Errno.current == .EOPNOTSUPP else { throw Errno.current }
            pinned = try sysCall { fcntl(fd, F_DUPFD_CLOEXEC, 0) }
        }
        var made = false
        let inode = inodes.remember(st, handle: handle) {
            made = true
            return Inode(key: InodeKey(st), handle: handle ?? .empty, pinnedFD: pinned, isDirectory: isDirectory)
        }
        if !made && pinned >= 0 { close(pinned) }
        return inode
    }

    /// Runs a call that creates an inode as the calling user and group, so
    /// ownership and setgid directories come out as on a local file system.
    @discardableResult @inline(__always) private func asCaller<T>(_ caller: Caller, _ body: () throws(Errno) -> T) throws(Errno) -> T {
        guard daemonUID == 0, caller.uid != daemonUID || caller.gid != daemonGID else { return try body() }
        _ = csys_become(caller.uid, caller.gid)
        defer { csys_unbecome(daemonUID, daemonGID) }
        return try body()
    }

    /// The mode a new inode under `dirfd` is created with. With POSIX ACLs
    /// the kernel sends the mode without the caller's umask: as on ext4, the
    /// umask applies unless the directory has a default ACL (the backing
    /// file system then derives the mode and ACL from it).
    private func creationMode(_ mode: mode_t, under dirfd: Int32, _ caller: Caller) -> mode_t {
        guard posixACLs else { return mode }
        let hasDefaultACL = (try? withProcPath(dirfd) { (p) throws(Errno) in
            CSystem.getxattr(p, "system.posix_acl_default", nil, 0) > 0
        }) ?? false
        return hasDefaultACL ? mode : mode & ~caller.umask
    }

    /// /proc/self/fd/N: reaches the inode an O_PATH fd refers to for the
    /// calls that take no fd (chmod, xattrs); never a symlink of the tree.
    @discardableResult private func withProcPath<T>(_ fd: Int32, _ body: (UnsafePointer<CChar>) throws(Errno) -> T) throws(Errno) -> T {
        var buf = (Int8(0), Int8(0), Int8(0), Int8(0), Int8(0), Int8(0), Int8(0), Int8(0),
                   Int8(0), Int8(0), Int8(0), Int8(0), Int8(0), Int8(0), Int8(0), Int8(0),
                   Int8(0), Int8(0), Int8(0), Int8(0), Int8(0), Int8(0), Int8(0), Int8(0),
                   Int8(0), Int8(0), Int8(0), Int8(0), Int8(0), Int8(0), Int8(0), Int8(0))
        return try withUnsafeMutableBytes(of: &buf) { (raw) throws(Errno) -> T in
            let p = raw.baseAddress!.assumingMemoryBound(to: CChar.self)
            _ = withVaList([fd]) { vsnprintf(p, raw.count, "/proc/self/fd/%d", $0) }
            return try body(p)
        }
    }

    private func attributes(fd: Int32) throws(Errno) -> Attributes {
        var st = stat()
        try sysCall { fstatat(fd, "", &st, Int32(CSYS_AT_EMPTY_PATH) | AT_SYMLINK_NOFOLLOW) }
        return Attributes(st, timeout: timeout)
    }

    // MARK: names

    public func lookup(_ caller: Caller, parent: NodeID, name: FileName) throws(Errno) -> Entry {
        if isHidden(parent, name) { throw .ENOENT }
        do throws(Errno) {
            return try withFD(parent) { (dirfd) throws(Errno) in try entry(dirfd: dirfd, name: name.cString) }
        } catch .ENOENT where options.aggressiveCaching {
            return .negative(timeout: timeout)
        }
    }

    public func forget(node: NodeID, count: UInt64) {
        if let gone = inodes.forget(node, count: count) { fds.drop(gone) }
    }

    public func getattr(_ caller: Caller, node: NodeID, handle: UInt64?) throws(Errno) -> Attributes {
        if let handle, !inode(node).isDirectory { return try attributes(fd: Int32(truncatingIfNeeded: handle)) }
        return try withFD(node) { (fd) throws(Errno) in try attributes(fd: fd) }
    }

    public func setattr(_ caller: Caller, node: NodeID, changes: AttributeChanges) throws(Errno) -> Attributes {
        let openFD: Int32? = inode(node).isDirectory ? nil : changes.handle.map { Int32(truncatingIfNeeded: $0) }
        return try withFD(node) { (fd) throws(Errno) in
            let f = changes.fields
            if f.contains(.mode) {
                try withProcPath(fd) { (path) throws(Errno) in try sysCall { chmod(path, changes.mode) } }
            }
            if f.contains(.uid) || f.contains(.gid) {
                let uid = f.contains(.uid) ? changes.uid : uid_t.max
                let gid = f.contains(.gid) ? changes.gid : gid_t.max
                try sysCall { fchownat(fd, "", uid, gid, Int32(CSYS_AT_EMPTY_PATH) | AT_SYMLINK_NOFOLLOW) }
            }
            if f.contains(.size) {
                if let openFD { try sysCall { ftruncate(openFD, changes.size) } }
                else { try withProcPath(fd) { (path) throws(Errno) in try sysCall { truncate(path, changes.size) } } }
            }
            if (f.contains(.killSUID) || f.contains(.killSGID)) && !f.contains(.mode) {
                try dropSetIDBits(fd, caller) { (mode) throws(Errno) in
                    try withProcPath(fd) { (path) throws(Errno) in try sysCall { chmod(path, mode) } }
                }
            }
            if f.contains(.atime) || f.contains(.mtime) || f.contains(.atimeNow) || f.contains(.mtimeNow) {
                var times = (changes.atime, changes.mtime)
                _ = try withUnsafePointer(to: &times) { (p) throws(Errno) in
                    try p.withMemoryRebound(to: timespec.self, capacity: 2) { (ts) throws(Errno) in
                        try sysCall { utimensat(fd, "", ts, Int32(CSYS_AT_EMPTY_PATH) | AT_SYMLINK_NOFOLLOW) }
                    }
                }
            }
            return try attributes(fd: fd)
        }
    }

    public func readlink(_ caller: Caller, node: NodeID) throws(Errno) -> [CChar] {
        try withFD(node) { (fd) throws(Errno) in
            var buf = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
            let n = try sysCall { readlinkat(fd, "", &buf, buf.count - 1) }
            buf[n] = 0
            buf.removeLast(buf.count - n - 1)
            return buf
        }
    }

    public func mknod(_ caller: Caller, parent: NodeID, name: FileName, mode: mode_t, device: dev_t) throws(Errno) -> Entry {
        try refuseHidden(parent, name)
        return try withFD(parent) { (dirfd) throws(Errno) in
            try asCaller(caller) { () throws(Errno) in try sysCall { mknodat(dirfd, name.cString, creationMode(mode, under: dirfd, caller), device) } }
            return try entry(dirfd: dirfd, name: name.cString)
        }
    }

    public func mkdir(_ caller: Caller, parent: NodeID, name: FileName, mode: mode_t) throws(Errno) -> Entry {
        try refuseHidden(parent, name)
        return try withFD(parent) { (dirfd) throws(Errno) in
            try asCaller(caller) { () throws(Errno) in try sysCall { mkdirat(dirfd, name.cString, creationMode(mode, under: dirfd, caller)) } }
            return try entry(dirfd: dirfd, name: name.cString)
        }
    }

    public func symlink(_ caller: Caller, target: FileName, parent: NodeID, name: FileName) throws(Errno) -> Entry {
        try refuseHidden(parent, name)
        return try withFD(parent) { (dirfd) throws(Errno) in
            try asCaller(caller) { () throws(Errno) in try sysCall { symlinkat(target.cString, dirfd, name.cString) } }
            return try entry(dirfd: dirfd, name: name.cString)
        }
    }

    public func link(_ caller: Caller, node: NodeID, newParent: NodeID, newName: FileName) throws(Errno) -> Entry {
        try refuseHidden(newParent, newName)
        return try withFD(node) { (fd) throws(Errno) in
            try withFD(newParent) { (dirfd) throws(Errno) in
                if linkat(fd, "", dirfd, newName.cString, Int32(CSYS_AT_EMPTY_PATH)) != 0 {
                    // AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH (a daemon not run by root).
                    guard Errno.current == .ENOENT else { throw Errno.current }
                    try withProcPath(fd) { (p) throws(Errno) in
                        try sysCall { linkat(AT_FDCWD, p, dirfd, newName.cString, AT_SYMLINK_FOLLOW) }
                    }
                }
                return try entry(dirfd: dirfd, name: newName.cString)
            }
        }
    }

    public func unlink(_ caller: Caller, parent: NodeID, name: FileName) throws(Errno) {
        if isHidden(parent, name) { throw .ENOENT }
        try withFD(parent) { (dirfd) throws(Errno) in try sysCall { unlinkat(dirfd, name.cString, 0) } }
    }

    public func rmdir(_ caller: Caller, parent: NodeID, name: FileName) throws(Errno) {
        if isHidden(parent, name) { throw .ENOENT }
        try withFD(parent) { (dirfd) throws(Errno) in try sysCall { unlinkat(dirfd, name.cString, AT_REMOVEDIR) } }
    }

    public func rename(_ caller: Caller, parent: NodeID, name: FileName, newParent: NodeID, newName: FileName, flags: UInt32) throws(Errno) {
        if isHidden(parent, name) { throw .ENOENT }
        try refuseHidden(newParent, newName)
        try withFD(parent) { (from) throws(Errno) in
            try withFD(newParent) { (to) throws(Errno) in
                try sysCall { csys_renameat2(from, name.cString, to, newName.cString, flags) }
            }
        }
    }

    // MARK: files

    /// Flags for the backing open: with the writeback cache the kernel reads
    /// pages of write-only files back and does O_APPEND itself; O_DIRECT
    /// becomes a direct_io open (the request buffer is not aligned).
    private func backingFlags(_ flags: Int32) -> Int32 {
        var f = flags & ~(O_CREAT | O_EXCL | O_NOCTTY | Int32(CSYS_O_DIRECT))
        if writebackCache {
            if f & O_ACCMODE == O_WRONLY { f = (f & ~O_ACCMODE) | O_RDWR }
            f &= ~O_APPEND
        }
        return f | O_CLOEXEC
    }

    /// Set in the handle of a file opened with O_DIRECT (the fd is the low
    /// 32 bits): its writes bypass the page cache, see `write`.
    private static let openedWithODirect: UInt64 = 1 << 32
    /// Set in the handle of a file whose backing fd has O_APPEND (only
    /// without the writeback cache, see `backingFlags`): see `write`.
    private static let backingAppends: UInt64 = 1 << 33

    private func opened(fd: Int32, flags: Int32) -> OpenedFile {
        var o = OpenedFile(handle: UInt64(UInt32(bitPattern: fd)))
        openHandles?.opened(file: fd)
        if flags & Int32(CSYS_O_DIRECT) != 0 { o.handle |= Self.openedWithODirect }
        if backingFlags(flags) & O_APPEND != 0 { o.handle |= Self.backingAppends }
        o.directIO = options.directIO || flags & Int32(CSYS_O_DIRECT) != 0
        o.keepCache = options.aggressiveCaching
        return o
    }

    public func open(_ caller: Caller, node: NodeID, flags: Int32) throws(Errno) -> OpenedFile {
        let inode = inode(node)
        let backing = backingFlags(flags)
        let fd: Int32
        if !inode.handle.isEmpty {
            var h = inode.handle.storage
            fd = try sysCall { csys_open_by_handle(mountFD, &h, backing) }
        } else {
            fd = try fds.withFD(inode) { (pathFD) throws(Errno) in
                try withProcPath(pathFD) { (p) throws(Errno) in try sysCall { Glibc.open(p, backing) } }
            }
        }
        if flags & O_ACCMODE != O_WRONLY && flags & (O_TRUNC | Int32(CSYS_O_NOATIME)) == 0 && options.accessTimes != .noatime {
            touchAccessTime(fd, node: node)
        }
        if flags & O_TRUNC != 0 && mustKillPrivileges(caller) {
            try? dropSetIDBits(fd, caller) { (mode) throws(Errno) in try sysCall { fchmod(fd, mode) } }
        }
        return opened(fd: fd, flags: flags)
    }

    /// The kernel serves reads from its page cache and never updates atime
    /// on a FUSE inode itself, so a read open stands for the read: the
    /// backing file's atime moves as a read would move it, and the kernel
    /// forgets its cached copy. Reading (not utimensat) leaves ctime alone
    /// and applies the backing mount's relatime rule.
    private func touchAccessTime(_ fd: Int32, node: NodeID) {
        var st = stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { return }
        let due = isBefore(st.st_atim, st.st_mtim, orEqual: true) || isBefore(st.st_atim, st.st_ctim, orEqual: true)
            || time(nil) - st.st_atim.tv_sec >= 86_400
        if due {
            var byte: UInt8 = 0
            _ = pread(fd, &byte, 1, 0)
        } else if options.accessTimes == .strictatime {
            // The backing mount would not move it: set it (this moves ctime).
            var times = (timespec(tv_sec: 0, tv_nsec: Int(CSYS_UTIME_NOW)), timespec(tv_sec: 0, tv_nsec: Int(CSYS_UTIME_OMIT)))
            _ = withUnsafePointer(to: &times) { p in
                p.withMemoryRebound(to: timespec.self, capacity: 2) { futimens(fd, $0) }
            }
        } else {
            return
        }
        session?.invalidateAttributes(of: node)
    }

    public func create(_ caller: Caller, parent: NodeID, name: FileName, mode: mode_t, flags: Int32) throws(Errno) -> (Entry, OpenedFile) {
        try refuseHidden(parent, name)
        return try withFD(parent) { (dirfd) throws(Errno) in
            let backing = backingFlags(flags) | O_CREAT | (flags & O_EXCL) | O_NOFOLLOW
            let mode = creationMode(mode, under: dirfd, caller)
            let fd = try asCaller(caller) { () throws(Errno) in try sysCall { openat(dirfd, name.cString, backing, mode) } }
            do throws(Errno) {
                return (try entry(openFD: fd), opened(fd: fd, flags: flags))
            } catch {
                close(fd)
                throw error
            }
        }
    }

    public func read(_ caller: Caller, node: NodeID, handle: UInt64, offset: off_t, size: Int) throws(Errno) -> ReadData {
        .file(fd: Int32(truncatingIfNeeded: handle), offset: offset, count: size)
    }

    public func write(_ caller: Caller, node: NodeID, handle: UInt64, data: WriteSource, offset: off_t, fromWriteback: Bool) throws(Errno) -> Int {
        let fd = Int32(truncatingIfNeeded: handle)
        if !fromWriteback && mustKillPrivileges(caller) {
            try dropSetIDBits(fd, caller) { (mode) throws(Errno) in
                try sysCall { fchmod(fd, mode) }
                session?.invalidateAttributes(of: node)  // the kernel still caches the old mode
            }
        }
        let stored: Int
        if fromWriteback && handle & Self.backingAppends != 0 {
            // A page written back (a shared mmap store) belongs at its
            // offset, but Linux's pwrite on an O_APPEND fd writes at EOF:
            // store it through a second open of the same file without it.
            let plain = try withProcPath(fd) { (p) throws(Errno) in try sysCall { Glibc.open(p, O_WRONLY | O_CLOEXEC) } }
            defer { close(plain) }
            stored = try data.store(to: plain, at: offset)
        } else {
            stored = try data.store(to: fd, at: offset)
        }
        if handle & Self.openedWithODirect != 0 && !fromWriteback {
            // The kernel dropped the cached pages of this range *before*
            // sending the write; a buffered reader may have read the old
            // bytes back in since. Drop them again now the new bytes are in
            // the backing file, as ext4 does after a direct write.
            session?.invalidateData(of: node, offset: offset, length: stored)
        }
        return stored
    }

    public func flush(_ caller: Caller, node: NodeID, handle: UInt64) throws(Errno) {}

    public func release(_ caller: Caller, node: NodeID, handle: UInt64) {
        openHandles?.released(file: Int32(truncatingIfNeeded: handle))
        close(Int32(truncatingIfNeeded: handle))
    }

    public func fsync(_ caller: Caller, node: NodeID, handle: UInt64, dataOnly: Bool) throws(Errno) {
        let fd = Int32(truncatingIfNeeded: handle)
        try sysCall { dataOnly ? fdatasync(fd) : Glibc.fsync(fd) }
    }

    public func fallocate(_ caller: Caller, node: NodeID, handle: UInt64, mode: Int32, offset: off_t, length: off_t) throws(Errno) {
        let fd = Int32(truncatingIfNeeded: handle)
        try sysCall { csys_fallocate(fd, mode, offset, length) }
        // ext4 clears the set-id bits on every fallocate mode (file_modified);
        // with KILLPRIV_V2 the kernel leaves that to us.
        if mustKillPrivileges(caller) {
            try dropSetIDBits(fd, caller) { (mode) throws(Errno) in
                try sysCall { fchmod(fd, mode) }
                session?.invalidateAttributes(of: node)
            }
        }
    }

    public func copyFileRange(_ caller: Caller, from source: NodeID, sourceHandle: UInt64, sourceOffset: off_t,
                              to destination: NodeID, destinationHandle: UInt64, destinationOffset: off_t,
                              length: Int, flags: Int32) throws(Errno) -> Int {
        var inOffset = sourceOffset, outOffset = destinationOffset
        return try sysCall {
            csys_copy_file_range(Int32(truncatingIfNeeded: sourceHandle), &inOffset,
                                Int32(truncatingIfNeeded: destinationHandle), &outOffset, length, UInt32(flags))
        }
    }

    public func lseek(_ caller: Caller, node: NodeID, handle: UInt64, offset: off_t, whence: Int32) throws(Errno) -> off_t {
        // With the writeback cache, data may still be dirty in the kernel's
        // page cache: the backing file's holes are not the file's holes.
        // ENOSYS makes the kernel answer itself (all data, hole at EOF).
        if writebackCache && (whence == Int32(CSYS_SEEK_DATA) || whence == Int32(CSYS_SEEK_HOLE)) { throw .ENOSYS }
        return try sysCall { Glibc.lseek(Int32(truncatingIfNeeded: handle), offset, whence) }
    }

    // MARK: directories

    public func opendir(_ caller: Caller, node: NodeID, flags: Int32) throws(Errno) -> OpenedFile {
        let inode = inode(node)
        let fd: Int32
        if !inode.handle.isEmpty {
            var h = inode.handle.storage
            fd = try sysCall { csys_open_by_handle(mountFD, &h, O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
        } else {
            fd = try fds.withFD(inode) { (pathFD) throws(Errno) in
                try sysCall { openat(pathFD, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
            }
        }
        guard let dir = DirectoryHandle(fd: fd) else { let e = Errno.current; close(fd); throw e }
        var o = OpenedFile(handle: dir.retainedHandle())
        openHandles?.opened(directory: o.handle)
        o.cacheReaddir = options.aggressiveCaching
        o.keepCache = options.aggressiveCaching
        return o
    }

    public func readdir(_ caller: Caller, node: NodeID, handle: UInt64, offset: off_t, plus: Bool,
                        into buffer: inout DirectoryBuffer) throws(Errno) {
        let dir = DirectoryHandle.from(handle)
        // With readdirplus_auto the kernel asks for a plus reply at offset 0
        // whether or not the caller will look at the attributes (later plus
        // requests come only after a lookup in the directory advised them).
        // A plain listing of a cold directory would then pay a backing lookup
        // per entry (an inode read from disk each, ~35 µs here) for nothing;
        // so that first reply looks entries up only for
        // `options.unadvisedLookupBudgetNanoseconds` (1 ms), and sends names
        // alone after that (node 0: the kernel makes no dentry and looks the
        // name up when it is used).
        var lookupDeadline = Int64.max
        if plus && offset == 0 {
            let (deadline, overflow) = SystemClock.monotonicNanoseconds()
                .addingReportingOverflow(options.unadvisedLookupBudgetNanoseconds)
            if !overflow { lookupDeadline = deadline }
        }
        try dir.stream.withLock { (s) throws(Errno) in
            if s.offset != offset { seekdir(s.dir, offset); s.offset = offset; s.pending = nil }
            while true {
                let d: UnsafeMutablePointer<dirent>
                if let p = s.pending {
                    d = p
                    s.pending = nil
                } else {
                    errno = 0
                    guard let r = Glibc.readdir(s.dir) else {
                        let e = errno
                        if e != 0 { throw Errno(e) }
                        return
                    }
                    d = r
                }
                if node == rootNodeID && !options.hiddenRootNames.isEmpty && isHiddenRootName(direntName(d)) {
                    s.offset = d.pointee.d_off
                    continue
                }
                let lookUp = plus && (lookupDeadline == .max || SystemClock.monotonicNanoseconds() <= lookupDeadline)
                let added: Bool
                do throws(Errno) { added = try add(d, in: dir.fd, plus: plus, lookUp: lookUp, to: &buffer) } catch {
                    s.pending = d  // the next call tries this entry again
                    throw error
                }
                if !added {
                    // The entry did not fit: the next call starts with it.
                    s.pending = d
                    return
                }
                s.offset = d.pointee.d_off
            }
        }
    }

    /// Adds one backing directory entry to a reply; false if it did not fit.
    /// A plus reply holds only plus entries: those not looked up (the dots,
    /// or `lookUp` false) carry node 0, which the kernel counts no lookup for.
    private func add(_ d: UnsafeMutablePointer<dirent>, in dirfd: Int32, plus: Bool, lookUp: Bool,
                     to buffer: inout DirectoryBuffer) throws(Errno) -> Bool {
        let name = direntName(d), next = d.pointee.d_off
        if !lookUp || isDotOrDotDot(name) {
            var st = stat()
            st.st_ino = d.pointee.d_ino
            st.st_mode = mode_t(d.pointee.d_type) << 12
            if !plus { return buffer.add(name, attributes: st, nextOffset: next) }
            return buffer.addPlus(name, entry: Entry(node: 0, attributes: st, attributesTimeout: 0, entryTimeout: 0),
                                  nextOffset: next)
        }
        let e: Entry
        do throws(Errno) { e = try entry(dirfd: dirfd, name: name) }
        catch .ENOENT { return true }  // deleted meanwhile: skip it
        if buffer.addPlus(name, entry: e, nextOffset: next) { return true }
        forget(node: e.node, count: 1)  // the kernel counts no lookup for an entry that did not fit
        return false
    }

    public func releasedir(_ caller: Caller, node: NodeID, handle: UInt64) {
        openHandles?.released(directory: handle)
        DirectoryHandle.release(handle)
    }

    public func fsyncdir(_ caller: Caller, node: NodeID, handle: UInt64, dataOnly: Bool) throws(Errno) {
        let fd = DirectoryHandle.from(handle).fd
        try sysCall { dataOnly ? fdatasync(fd) : Glibc.fsync(fd) }
    }

    // MARK: the rest

    public func statfs(_ caller: Caller, node: NodeID) throws(Errno) -> statvfs {
        try withFD(node) { (fd) throws(Errno) in
            var st = statvfs()
            try sysCall { fstatvfs(fd, &st) }
            return st
        }
    }

    public func access(_ caller: Caller, node: NodeID, mask: Int32) throws(Errno) {
        try withFD(node) { (fd) throws(Errno) in
            try withProcPath(fd) { (p) throws(Errno) in try sysCall { faccessat(AT_FDCWD, p, mask, 0) } }
        }
    }

    public func setxattr(_ caller: Caller, node: NodeID, name: FileName, value: UnsafeRawBufferPointer, flags: Int32) throws(Errno) {
        let acl = ACLName(name)
        if acl != nil && !posixACLs { throw .EOPNOTSUPP }  // never store what is not enforced
        try withFD(node) { (fd) throws(Errno) in
            try withProcPath(fd) { (p) throws(Errno) in
                try sysCall { CSystem.setxattr(p, name.cString, value.baseAddress, value.count, flags) }
                // The backing file system updated the mode from the ACL as
                // root; ext4 also drops setgid when the caller is neither in
                // the file's group nor has CAP_FSETID.
                if acl == .access && caller.uid != 0 {
                    var st = stat()
                    try sysCall { fstatat(fd, "", &st, Int32(CSYS_AT_EMPTY_PATH) | AT_SYMLINK_NOFOLLOW) }
                    if st.st_mode & S_ISGID != 0 && !isInGroup(caller, st.st_gid) {
                        try sysCall { chmod(p, st.st_mode & 0o7777 & ~S_ISGID) }
                    }
                }
            }
        }
    }

    public func getxattr(_ caller: Caller, node: NodeID, name: FileName, size: Int) throws(Errno) -> XattrReply {
        if !posixACLs && ACLName(name) != nil { throw .EOPNOTSUPP }
        return try withFD(node) { (fd) throws(Errno) in
            try withProcPath(fd) { (p) throws(Errno) in
                if size == 0 { return .size(try sysCall { CSystem.getxattr(p, name.cString, nil, 0) }) }
                var buf = [UInt8](repeating: 0, count: size)
                let n = try sysCall { CSystem.getxattr(p, name.cString, &buf, size) }
                buf.removeLast(size - n)
                return .data(buf)
            }
        }
    }

    public func listxattr(_ caller: Caller, node: NodeID, size: Int) throws(Errno) -> XattrReply {
        try withFD(node) { (fd) throws(Errno) in
            try withProcPath(fd) { (p) throws(Errno) in
                if size == 0 { return .size(try sysCall { CSystem.listxattr(p, nil, 0) }) }
                var buf = [CChar](repeating: 0, count: size)
                let n = try sysCall { CSystem.listxattr(p, &buf, size) }
                return .data(buf.prefix(n).map { UInt8(bitPattern: $0) })
            }
        }
    }

    public func removexattr(_ caller: Caller, node: NodeID, name: FileName) throws(Errno) {
        if !posixACLs && ACLName(name) != nil { throw .EOPNOTSUPP }
        try withFD(node) { (fd) throws(Errno) in
            try withProcPath(fd) { (p) throws(Errno) in try sysCall { CSystem.removexattr(p, name.cString) } }
        }
    }
}

/// The name inside a dirent, by offset: copying `d_name` (256 bytes) would
/// read past a short entry at the end of readdir's buffer.
@inline(__always) func direntName(_ d: UnsafeMutablePointer<dirent>) -> UnsafePointer<CChar> {
    (UnsafeRawPointer(d) + MemoryLayout<dirent>.offset(of: \dirent.d_name)!).assumingMemoryBound(to: CChar.self)
}

@inline(__always) func isDotOrDotDot(_ name: UnsafePointer<CChar>) -> Bool {
    name[0] == 0x2E && (name[1] == 0 || (name[1] == 0x2E && name[2] == 0))
}

/// The two extended attributes that hold POSIX ACLs.
enum ACLName {
    case access, `default`
    init?(_ name: FileName) {
        if name.equals("system.posix_acl_access") { self = .access }
        else if name.equals("system.posix_acl_default") { self = .default }
        else { return nil }
    }
}

/// Whether the caller's fsgid or one of its supplementary groups is `gid`
/// (the groups come from /proc: a FUSE request carries only one gid).
func isInGroup(_ caller: Caller, _ gid: gid_t) -> Bool {
    if caller.gid == gid { return true }
    guard caller.pid > 0, let status = try? String(contentsOfProcFile: "/proc/\(caller.pid)/status") else { return false }
    guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix("Groups:") }) else { return false }
    return line.dropFirst("Groups:".count).split(whereSeparator: { $0 == " " || $0 == "\t" }).contains { gid_t($0) == gid }
}

extension String {
    /// A small /proc file, read without Foundation.
    init(contentsOfProcFile path: String) throws(Errno) {
        let fd = try sysCall { open(path, O_RDONLY | O_CLOEXEC) }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = try sysCall { read(fd, &buffer, buffer.count) }
            if n == 0 { break }
            bytes += buffer[0..<n]
        }
        self = String(decoding: bytes, as: UTF8.self)
    }
}

@inline(__always) func isBefore(_ a: timespec, _ b: timespec, orEqual: Bool) -> Bool {
    a.tv_sec < b.tv_sec || (a.tv_sec == b.tv_sec && (a.tv_nsec < b.tv_nsec || (orEqual && a.tv_nsec == b.tv_nsec)))
}
