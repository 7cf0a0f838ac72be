import FuseKit
import Glibc
import System
import Synchronization

/// An open directory: a DIR stream and the offset it stands at, so that a
/// readdir continuing where the last one stopped needs no seek.
final class DirectoryHandle: @unchecked Sendable {
    struct Stream: @unchecked Sendable {
        let dir: OpaquePointer
        var offset: off_t = 0
        /// The entry at `offset` when it was read but did not fit in the last
        /// reply (it points into the DIR's buffer, valid until the next
        /// readdir, seekdir or closedir): the next reply starts with it
        /// instead of seeking back, which would make glibc read the whole
        /// buffer again (two getdents64 per reply instead of one).
        var pending: UnsafeMutablePointer<dirent>?
    }
    let stream: Mutex<Stream>
    let fd: Int32

    init?(fd: Int32) {
        guard let dir = fdopendir(fd) else { return nil }
        self.fd = fd
        stream = Mutex(Stream(dir: dir))
    }
    deinit { stream.withLock { _ = closedir($0.dir) } }

    /// The FUSE file handle for this directory, owning one reference:
    /// call once per opendir, and `release` it at releasedir.
    func retainedHandle() -> UInt64 { ObjectAddress.integer(ObjectAddress.retain(self)) }
    static func from(_ handle: UInt64) -> DirectoryHandle {
        ObjectAddress.object(at: ObjectAddress.address(handle))
    }
    static func release(_ handle: UInt64) {
        ObjectAddress.release(ObjectAddress.address(handle), as: DirectoryHandle.self)
    }
}
