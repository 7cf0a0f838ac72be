import FuseKit
import Glibc
import Synchronization

/// An open directory: a DIR stream and the offset it stands at, so that a
/// readdir continuing where the last one stopped needs no seek.
final class DirectoryHandle: @unchecked Sendable {
    struct Stream: @unchecked Sendable {
        let dir: OpaquePointer
        var offset: off_t = 0
    }
    let stream: Mutex<Stream>
    let fd: Int32

    init?(fd: Int32) {
        guard let dir = fdopendir(fd) else { return nil }
        self.fd = fd
        stream = Mutex(Stream(dir: dir))
    }
    deinit { stream.withLock { _ = closedir($0.dir) } }

    var handle: UInt64 { UInt64(UInt(bitPattern: Unmanaged.passRetained(self).toOpaque())) }
    static func from(_ handle: UInt64) -> DirectoryHandle {
        Unmanaged<DirectoryHandle>.fromOpaque(UnsafeRawPointer(bitPattern: UInt(handle))!).takeUnretainedValue()
    }
    static func release(_ handle: UInt64) {
        Unmanaged<DirectoryHandle>.fromOpaque(UnsafeRawPointer(bitPattern: UInt(handle))!).release()
    }
}
