import CFuse
import Glibc
import System

/// The kernel's name for an inode of the mount (FUSE_ROOT_ID is 1).
public typealias NodeID = UInt64
public let rootNodeID: NodeID = 1

/// Who sent a request. Background writeback carries uid/gid/pid 0.
public struct Caller: Sendable {
    public var uid: uid_t
    public var gid: gid_t
    public var pid: pid_t
    public var umask: mode_t
    public init(uid: uid_t, gid: gid_t, pid: pid_t, umask: mode_t) {
        self.uid = uid; self.gid = gid; self.pid = pid; self.umask = umask
    }
}

/// A name inside a directory, borrowed from the request buffer: valid only
/// during the handler call. Converting to String allocates, so the hot path
/// compares bytes instead.
public struct FileName {
    public let cString: UnsafePointer<CChar>
    @inlinable public init(_ cString: UnsafePointer<CChar>) { self.cString = cString }
    public var string: String { String(cString: cString) }
    @inlinable public func equals(_ other: UnsafePointer<CChar>) -> Bool { strcmp(cString, other) == 0 }
}

/// What lookup, mknod, mkdir, symlink, link and create answer.
public struct Entry {
    public var node: NodeID
    public var generation: UInt64
    public var attributes: stat
    public var attributesTimeout: Double
    public var entryTimeout: Double
    public init(node: NodeID, generation: UInt64 = 0, attributes: stat, attributesTimeout: Double, entryTimeout: Double) {
        self.node = node; self.generation = generation; self.attributes = attributes
        self.attributesTimeout = attributesTimeout; self.entryTimeout = entryTimeout
    }
    /// A negative entry: "no such name", cached by the kernel for `timeout`.
    public static func negative(timeout: Double) -> Entry {
        Entry(node: 0, attributes: stat(), attributesTimeout: 0, entryTimeout: timeout)
    }
}

/// What getattr and setattr answer.
public struct Attributes {
    public var stat: stat
    public var timeout: Double
    public init(_ stat: stat, timeout: Double) { self.stat = stat; self.timeout = timeout }
}

/// What open, opendir and create answer: the handle the kernel will send
/// back, and how the kernel should cache the file's pages.
public struct OpenedFile: Sendable {
    public var handle: UInt64
    public var directIO = false
    public var keepCache = false
    public var cacheReaddir = false
    public var nonSeekable = false
    public var noFlush = false
    public init(handle: UInt64) { self.handle = handle }
}

/// Which fields a setattr request changes (FUSE_SET_ATTR_*).
public struct AttributeFields: OptionSet, Sendable {
    public let rawValue: Int32
    public init(rawValue: Int32) { self.rawValue = rawValue }
    public static let mode = AttributeFields(rawValue: 1 << 0)
    public static let uid = AttributeFields(rawValue: 1 << 1)
    public static let gid = AttributeFields(rawValue: 1 << 2)
    public static let size = AttributeFields(rawValue: 1 << 3)
    public static let atime = AttributeFields(rawValue: 1 << 4)
    public static let mtime = AttributeFields(rawValue: 1 << 5)
    public static let atimeNow = AttributeFields(rawValue: 1 << 7)
    public static let mtimeNow = AttributeFields(rawValue: 1 << 8)
    public static let ctime = AttributeFields(rawValue: 1 << 10)
    public static let killSUID = AttributeFields(rawValue: 1 << 11)
    public static let killSGID = AttributeFields(rawValue: 1 << 12)
}

/// A setattr request. Times already carry UTIME_NOW for the *_NOW fields and
/// UTIME_OMIT for fields not set, ready for utimensat.
public struct AttributeChanges {
    public var fields: AttributeFields
    public var mode: mode_t
    public var uid: uid_t
    public var gid: gid_t
    public var size: off_t
    public var atime: timespec
    public var mtime: timespec
    /// The open file the change came through (ftruncate, fchmod), if any.
    public var handle: UInt64?
    public init(fields: AttributeFields, mode: mode_t, uid: uid_t, gid: gid_t, size: off_t,
                atime: timespec, mtime: timespec, handle: UInt64?) {
        self.fields = fields; self.mode = mode; self.uid = uid; self.gid = gid; self.size = size
        self.atime = atime; self.mtime = mtime; self.handle = handle
    }
}

/// What a read answers: file bytes the binding splices straight from an fd
/// (no copy through the daemon), or bytes in memory.
public enum ReadData {
    case file(fd: Int32, offset: off_t, count: Int)
    case bytes([UInt8])
}

extension ReadData {
    /// The answer's bytes in memory: a `.file` answer is read now (pread
    /// until `count` bytes or end of file). For a decorator that must change
    /// the data (the fault layer's `corrupt read`); other reads keep the splice.
    public func inMemory() throws(Errno) -> [UInt8] {
        switch self {
        case .bytes(let bytes):
            return bytes
        case .file(let fd, let offset, let count):
            var out = [UInt8](repeating: 0, count: count)
            var filled = 0
            while filled < count {
                let n = try sysCall {
                    out.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + filled, count - filled, offset + off_t(filled)) }
                }
                if n == 0 { break }
                filled += n
            }
            out.removeLast(count - filled)
            return out
        }
    }
}

/// getxattr/listxattr answer the size needed when asked with size 0.
public enum XattrReply {
    case size(Int)
    case data([UInt8])
}

/// Capabilities negotiated with the kernel at init (FUSE_CAP_*).
public struct Capabilities: OptionSet, Sendable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let asyncRead = Capabilities(rawValue: 1 << 0)
    public static let posixLocks = Capabilities(rawValue: 1 << 1)
    public static let atomicOTrunc = Capabilities(rawValue: 1 << 3)
    public static let exportSupport = Capabilities(rawValue: 1 << 4)
    public static let dontMask = Capabilities(rawValue: 1 << 6)
    public static let spliceWrite = Capabilities(rawValue: 1 << 7)
    public static let spliceMove = Capabilities(rawValue: 1 << 8)
    public static let spliceRead = Capabilities(rawValue: 1 << 9)
    public static let flockLocks = Capabilities(rawValue: 1 << 10)
    public static let autoInvalData = Capabilities(rawValue: 1 << 12)
    public static let readdirplus = Capabilities(rawValue: 1 << 13)
    public static let readdirplusAuto = Capabilities(rawValue: 1 << 14)
    public static let asyncDIO = Capabilities(rawValue: 1 << 15)
    public static let writebackCache = Capabilities(rawValue: 1 << 16)
    public static let parallelDirops = Capabilities(rawValue: 1 << 18)
    public static let posixACL = Capabilities(rawValue: 1 << 19)
    public static let handleKillpriv = Capabilities(rawValue: 1 << 20)
    public static let cacheSymlinks = Capabilities(rawValue: 1 << 23)
    public static let explicitInvalData = Capabilities(rawValue: 1 << 25)
}

/// The connection's parameters; `initialize` reads `capable` and sets `want`.
public struct Connection: Sendable {
    public var capable: Capabilities
    public var want: Capabilities
    public var maxWrite: UInt32
    public var maxReadahead: UInt32
    public var maxBackground: UInt32
    public var congestionThreshold: UInt32
    public var timeGranularity: UInt32
}
