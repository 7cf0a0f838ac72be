import FuseKit
import Glibc
import Synchronization

/// The files (backing fds) and directories (`DirectoryHandle`s) the kernel
/// holds open, for `forgetNodeState`.
final class OpenHandles: Sendable {
    private struct Open {
        var files = Set<Int32>()
        var directories = Set<UInt64>()
    }
    private let open = Mutex(Open())

    func opened(file fd: Int32) { _ = open.withLock { $0.files.insert(fd) } }
    func released(file fd: Int32) { _ = open.withLock { $0.files.remove(fd) } }
    func opened(directory handle: UInt64) { _ = open.withLock { $0.directories.insert(handle) } }
    func released(directory handle: UInt64) { _ = open.withLock { $0.directories.remove(handle) } }

    /// Closes and releases all of them.
    func closeAll() {
        let all = open.withLock { o in
            defer { o = Open() }
            return o
        }
        for fd in all.files { close(fd) }
        for handle in all.directories { DirectoryHandle.release(handle) }
    }
}

extension PassthroughFileSystem {
    /// Forgets every node the kernel knew and every file it held open (with
    /// `tracksOpenFiles`), keeping only the root: called by `destroy`, when
    /// the session has ended. After an aborted connection (a simulated
    /// crash) the kernel sends no forget and no release, and a new session
    /// starts from the root with the same file system.
    func forgetNodeState() {
        for inode in inodes.forgetAll() { fds.drop(inode) }
        fds.dropAll()
        openHandles?.closeAll()
    }
}
