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

}

func procLink(_ fd: Int32) throws(Errno) -> String {
    var buf = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
    let n = try sysCall { readlink("/proc/self/fd/\(fd)", &buf, buf.count - 1) }
    return String(decoding: buf.prefix(n).map { UInt8(bitPattern: $0) }, as: UTF8.self)
}
