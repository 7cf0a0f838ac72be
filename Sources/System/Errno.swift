// The one typed errno: what a failed system call left, what a FUSE reply
// carries, with its text (strerror) and its name (the table below).
import Glibc

/// A POSIX error number. The FUSE binding sends `-rawValue` to the kernel,
/// which accepts 1...511 (`Errno.replyRange`).
public struct Errno: Error, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: Int32
    @inlinable public init(_ rawValue: Int32) { self.rawValue = rawValue }

    /// The calling thread's `errno`, right after a failed system call.
    @inlinable public static var current: Errno { Errno(errno) }

    /// The C library's text: "No space left on device".
    public var description: String { String(cString: strerror(rawValue)) }

    /// The symbolic name (`ENOSPC`), or nil if Linux defines none for this value.
    public var name: String? { nameByValue[rawValue] }

    /// The errno called `name`, aliases included; case-insensitive (`"enospc"`).
    public init?(named name: String) {
        guard let value = valueByName[name.uppercased()] else { return nil }
        self.init(value)
    }

    /// Errnos a FUSE reply may carry: the kernel rejects replies outside (-512, 0).
    public static let replyRange: ClosedRange<Int32> = 1...511

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

/// Runs a system call that returns -1 and sets errno on failure: again on
/// EINTR, else throws the errno.
@inlinable @discardableResult
public func sysCall<T: FixedWidthInteger>(_ body: () -> T) throws(Errno) -> T {
    while true {
        let rc = body()
        if rc != -1 { return rc }
        let e = Errno.current
        if e != .EINTR { throw e }
    }
}

// MARK: names

// Everything glibc's <errno.h> defines on Linux x86_64 (values 1...133),
// plus the aliases glibc also accepts.

/// Primary names in value order. Linux leaves 41 and 58 unassigned.
private let errnoNames: [(name: String, value: Int32)] = [
    ("EPERM", 1), ("ENOENT", 2), ("ESRCH", 3), ("EINTR", 4), ("EIO", 5),
    ("ENXIO", 6), ("E2BIG", 7), ("ENOEXEC", 8), ("EBADF", 9), ("ECHILD", 10),
    ("EAGAIN", 11), ("ENOMEM", 12), ("EACCES", 13), ("EFAULT", 14), ("ENOTBLK", 15),
    ("EBUSY", 16), ("EEXIST", 17), ("EXDEV", 18), ("ENODEV", 19), ("ENOTDIR", 20),
    ("EISDIR", 21), ("EINVAL", 22), ("ENFILE", 23), ("EMFILE", 24), ("ENOTTY", 25),
    ("ETXTBSY", 26), ("EFBIG", 27), ("ENOSPC", 28), ("ESPIPE", 29), ("EROFS", 30),
    ("EMLINK", 31), ("EPIPE", 32), ("EDOM", 33), ("ERANGE", 34), ("EDEADLK", 35),
    ("ENAMETOOLONG", 36), ("ENOLCK", 37), ("ENOSYS", 38), ("ENOTEMPTY", 39), ("ELOOP", 40),
    ("ENOMSG", 42), ("EIDRM", 43), ("ECHRNG", 44), ("EL2NSYNC", 45), ("EL3HLT", 46),
    ("EL3RST", 47), ("ELNRNG", 48), ("EUNATCH", 49), ("ENOCSI", 50), ("EL2HLT", 51),
    ("EBADE", 52), ("EBADR", 53), ("EXFULL", 54), ("ENOANO", 55), ("EBADRQC", 56),
    ("EBADSLT", 57), ("EBFONT", 59), ("ENOSTR", 60), ("ENODATA", 61), ("ETIME", 62),
    ("ENOSR", 63), ("ENONET", 64), ("ENOPKG", 65), ("EREMOTE", 66), ("ENOLINK", 67),
    ("EADV", 68), ("ESRMNT", 69), ("ECOMM", 70), ("EPROTO", 71), ("EMULTIHOP", 72),
    ("EDOTDOT", 73), ("EBADMSG", 74), ("EOVERFLOW", 75), ("ENOTUNIQ", 76), ("EBADFD", 77),
    ("EREMCHG", 78), ("ELIBACC", 79), ("ELIBBAD", 80), ("ELIBSCN", 81), ("ELIBMAX", 82),
    ("ELIBEXEC", 83), ("EILSEQ", 84), ("ERESTART", 85), ("ESTRPIPE", 86), ("EUSERS", 87),
    ("ENOTSOCK", 88), ("EDESTADDRREQ", 89), ("EMSGSIZE", 90), ("EPROTOTYPE", 91), ("ENOPROTOOPT", 92),
    ("EPROTONOSUPPORT", 93), ("ESOCKTNOSUPPORT", 94), ("EOPNOTSUPP", 95), ("EPFNOSUPPORT", 96), ("EAFNOSUPPORT", 97),
    ("EADDRINUSE", 98), ("EADDRNOTAVAIL", 99), ("ENETDOWN", 100), ("ENETUNREACH", 101), ("ENETRESET", 102),
    ("ECONNABORTED", 103), ("ECONNRESET", 104), ("ENOBUFS", 105), ("EISCONN", 106), ("ENOTCONN", 107),
    ("ESHUTDOWN", 108), ("ETOOMANYREFS", 109), ("ETIMEDOUT", 110), ("ECONNREFUSED", 111), ("EHOSTDOWN", 112),
    ("EHOSTUNREACH", 113), ("EALREADY", 114), ("EINPROGRESS", 115), ("ESTALE", 116), ("EUCLEAN", 117),
    ("ENOTNAM", 118), ("ENAVAIL", 119), ("EISNAM", 120), ("EREMOTEIO", 121), ("EDQUOT", 122),
    ("ENOMEDIUM", 123), ("EMEDIUMTYPE", 124), ("ECANCELED", 125), ("ENOKEY", 126), ("EKEYEXPIRED", 127),
    ("EKEYREVOKED", 128), ("EKEYREJECTED", 129), ("EOWNERDEAD", 130), ("ENOTRECOVERABLE", 131), ("ERFKILL", 132),
    ("EHWPOISON", 133),
]

/// Second names for values that already have a primary name above.
private let errnoAliases: [(name: String, value: Int32)] = [
    ("EWOULDBLOCK", 11), ("EDEADLOCK", 35), ("ENOTSUP", 95),
]

/// Index into `errnoNames` by value; built once.
private let nameByValue: [Int32: String] = Dictionary(
    uniqueKeysWithValues: errnoNames.map { ($0.value, $0.name) })

/// Lookup by upper-case name, aliases included; built once.
private let valueByName: [String: Int32] = Dictionary(
    uniqueKeysWithValues: (errnoNames + errnoAliases).map { ($0.name, $0.value) })
