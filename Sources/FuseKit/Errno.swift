import CFuse
import Glibc

/// A POSIX error number: what a FUSE reply carries when an operation fails.
/// The binding sends `-rawValue` to the kernel, which accepts 1...511.
public struct Errno: Error, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: Int32
    @inlinable public init(_ rawValue: Int32) { self.rawValue = rawValue }

    /// The calling thread's `errno`, right after a failed system call.
    @inlinable public static var current: Errno { Errno(ffs_errno()) }

    public var description: String { String(cString: strerror(rawValue)) }

    public static let EPERM = Errno(Glibc.EPERM)
    public static let ENOENT = Errno(Glibc.ENOENT)
    public static let EIO = Errno(Glibc.EIO)
    public static let EBADF = Errno(Glibc.EBADF)
    public static let ENOMEM = Errno(Glibc.ENOMEM)
    public static let EACCES = Errno(Glibc.EACCES)
    public static let EEXIST = Errno(Glibc.EEXIST)
    public static let ENOTDIR = Errno(Glibc.ENOTDIR)
    public static let EISDIR = Errno(Glibc.EISDIR)
    public static let EINVAL = Errno(Glibc.EINVAL)
    public static let ENOSPC = Errno(Glibc.ENOSPC)
    public static let ERANGE = Errno(Glibc.ERANGE)
    public static let ENOSYS = Errno(Glibc.ENOSYS)
    public static let ENOTEMPTY = Errno(Glibc.ENOTEMPTY)
    public static let ENODATA = Errno(Glibc.ENODATA)
    public static let EOPNOTSUPP = Errno(Glibc.EOPNOTSUPP)
    public static let ESTALE = Errno(Glibc.ESTALE)
    public static let EXDEV = Errno(Glibc.EXDEV)
    public static let EMFILE = Errno(Glibc.EMFILE)
    public static let ELOOP = Errno(Glibc.ELOOP)
    public static let EINTR = Errno(Glibc.EINTR)
}

/// Runs a system call that returns -1 and sets errno on failure.
@inlinable @discardableResult
public func sysCall<T: FixedWidthInteger>(_ body: () -> T) throws(Errno) -> T {
    while true {
        let rc = body()
        if rc != -1 { return rc }
        let e = Errno.current
        if e != .EINTR { throw e }
    }
}
