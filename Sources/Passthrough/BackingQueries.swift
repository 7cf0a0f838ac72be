import System
import FuseKit
import Glibc

/// Questions about the backing tree that decorators ask (a fault layer that
/// targets paths, a capacity model). None of them is on the request path of
/// the passthrough itself.
extension PassthroughFileSystem {
    /// The node's path relative to the mount root ("" for the root), as the
    /// kernel resolves its fd now; nil when it cannot be reached.
    public func path(of node: NodeID) -> String? {
        guard let absolute = try? fds.withFD(inodes.inode(node), { (fd) throws(Errno) in try procLink(fd) }) else { return nil }
        if absolute == rootPath { return "" }
        guard absolute.hasPrefix(rootPath + "/") else { return nil }
        return String(absolute.dropFirst(rootPath.count + 1))
    }

    /// The backing inode number: what `stat` shows through the mount and
    /// what the kernel's tracepoints call `ino`.
    public func inodeNumber(of node: NodeID) -> UInt64 { inodes.inode(node).key.ino }

    /// Node ids are inode addresses (see `Inode`), user-space pointers far
    /// below 2^63 on every 64-bit Linux, and 1 for the root: the top half
    /// is free for a decorator's own nodes.
    public var unusedNodeIDs: ClosedRange<NodeID>? { (1 << 63)...(NodeID.max - 1) }

    /// Bytes used by the files of the backing tree (apparent sizes, each
    /// inode once), walking it without following symlinks.
    public func usedBytes() -> Int64 {
        var seen = Set<InodeKey>()
        var total: Int64 = 0
        func walk(_ dirfd: Int32) {
            guard let dir = fdopendir(dirfd) else { close(dirfd); return }
            defer { closedir(dir) }
            while let d = Glibc.readdir(dir) {
                let name = direntName(d)
                if isDotOrDotDot(name) { continue }
                var st = stat()
                guard fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 else { continue }
                if (st.st_mode & S_IFMT) == S_IFDIR {
                    let child = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                    if child >= 0 { walk(child) }
                } else if st.st_nlink <= 1 || seen.insert(InodeKey(st)).inserted {  // only hard links can repeat
                    total += Int64(st.st_size)
                }
            }
        }
        let start = openat(mountFD, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if start >= 0 { walk(start) }
        return total
    }

    // MARK: for the crash layer (reaching files after the session is gone)

    /// The node's backing file handle (name_to_handle_at) as bytes: the
    /// handle type (4 bytes, little endian), then the handle. Nil when the
    /// backing file system has no handles.
    public func backingHandle(of node: NodeID) -> [UInt8]? {
        let inode = inodes.inode(node)
        guard !inode.handle.isEmpty else { return nil }
        var storage = inode.handle.storage
        let type = UInt32(bitPattern: storage.handle_type)
        var bytes = [UInt8(type & 0xff), UInt8((type >> 8) & 0xff), UInt8((type >> 16) & 0xff), UInt8(type >> 24)]
        withUnsafeBytes(of: &storage.f_handle) { bytes += $0.prefix(Int(storage.handle_bytes)) }
        return bytes
    }

    /// Opens the backing file a `backingHandle` names (open_by_handle_at
    /// through the backing mount); the caller closes the fd.
    public func openBacking(handle bytes: [UInt8], flags: Int32) throws(Errno) -> Int32 {
        var h = FileHandleBytes()
        guard bytes.count >= 4, bytes.count - 4 <= MemoryLayout.size(ofValue: h.storage.f_handle) else { throw .EINVAL }
        h.storage.handle_type = Int32(bitPattern: UInt32(bytes[0]) | UInt32(bytes[1]) << 8 | UInt32(bytes[2]) << 16 | UInt32(bytes[3]) << 24)
        h.storage.handle_bytes = UInt32(bytes.count - 4)
        withUnsafeMutableBytes(of: &h.storage.f_handle) { raw in
            for (i, byte) in bytes.dropFirst(4).enumerated() { raw[i] = byte }
        }
        return try sysCall { csys_open_by_handle(mountFD, &h.storage, flags | O_CLOEXEC) }
    }

    /// A new fd of the backing root directory (O_RDONLY); the caller closes it.
    public func openBackingRoot() throws(Errno) -> Int32 {
        try sysCall { openat(mountFD, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
    }

    /// Runs `body` with an O_PATH fd of the node's backing file (a directory:
    /// usable as the dirfd of *at calls).
    public func withBackingFD<T>(of node: NodeID, _ body: (Int32) throws(Errno) -> T) throws(Errno) -> T {
        try fds.withFD(inodes.inode(node), body)
    }

    /// Copies `length` backing bytes of the node at `offset` to `destination`
    /// at `destinationOffset` inside the kernel (copy_file_range), through
    /// the open file `handle` when it can read; returns the bytes copied
    /// (fewer at the end of the file).
    public func copyBacking(of node: NodeID, handle: UInt64?, offset: Int64, length: Int,
                            to destination: Int32, at destinationOffset: Int64) throws(Errno) -> Int {
        func copy(_ fd: Int32) throws(Errno) -> Int {
            var from = off_t(offset), to = off_t(destinationOffset)
            return try sysCall { csys_copy_file_range(fd, &from, destination, &to, length, 0) }
        }
        if let handle {
            do throws(Errno) { return try copy(Int32(truncatingIfNeeded: handle)) } catch .EBADF {}  // opened write-only
        }
        let inode = inodes.inode(node)
        guard !inode.handle.isEmpty else { throw .EXDEV }
        var h = inode.handle.storage
        let fd = try sysCall { csys_open_by_handle(mountFD, &h, O_RDONLY | O_CLOEXEC) }
        defer { close(fd) }
        return try copy(fd)
    }

    /// Reads the node's backing bytes at `offset` as they are now (the crash
    /// layer saves what a change will overwrite): through the open file
    /// `handle` when it can read, else through a reopen by handle.
    public func readBacking(of node: NodeID, handle: UInt64?, offset: Int64, into buffer: UnsafeMutableRawBufferPointer) throws(Errno) -> Int {
        if let handle {
            let n = pread(Int32(truncatingIfNeeded: handle), buffer.baseAddress, buffer.count, off_t(offset))
            if n >= 0 { return n }
            guard Errno.current == .EBADF else { throw Errno.current }  // opened write-only
        }
        let inode = inodes.inode(node)
        let fd: Int32
        if !inode.handle.isEmpty {
            var h = inode.handle.storage
            fd = try sysCall { csys_open_by_handle(mountFD, &h, O_RDONLY | O_CLOEXEC) }
        } else {
            fd = try fds.withFD(inode) { (pathFD) throws(Errno) in
                try sysCall { Glibc.open("/proc/self/fd/\(pathFD)", O_RDONLY | O_CLOEXEC) }
            }
        }
        defer { close(fd) }
        return try sysCall { pread(fd, buffer.baseAddress, buffer.count, off_t(offset)) }
    }

}

func procLink(_ fd: Int32) throws(Errno) -> String {
    var buf = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
    let n = try sysCall { readlink("/proc/self/fd/\(fd)", &buf, buf.count - 1) }
    return String(decoding: buf.prefix(n).map { UInt8(bitPattern: $0) }, as: UTF8.self)
}
