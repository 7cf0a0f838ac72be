/// How the passthrough asks the kernel to cache, and its resource bounds.
public struct PassthroughOptions: Sendable {
    /// Let data sit dirty in the page cache and be written back later.
    public var writebackCache = true
    /// Bypass the page cache for every open (FOPEN_DIRECT_IO).
    public var directIO = false
    /// faultfs normally owns its tree: keep pages across opens, long
    /// attribute and entry timeouts. Off for a backing directory that others
    /// change behind the mount's back.
    public var aggressiveCaching = true
    /// Splice data between /dev/fuse and backing files where possible.
    public var splice = true
    /// POSIX ACLs enforced by the kernel, when the backing file system has
    /// them; otherwise the ACL attributes are refused (EOPNOTSUPP).
    public var posixACLs = true
    /// When reading a file updates its access time.
    public enum AccessTimeUpdates: String, Sendable {
        /// When the atime is not newer than the mtime or ctime, or a day old (the Linux default).
        case relatime
        /// On every read.
        case strictatime
        /// Never.
        case noatime
    }
    public var accessTimes = AccessTimeUpdates.relatime
    /// How many O_PATH fds of recently used inodes to keep open.
    public var fdCacheCapacity = 512
    /// Keep the set of open files and directories, so that `destroy` can
    /// close those a dead connection will never release (a simulated
    /// crash aborts the connection and serves on with a new one). Costs a
    /// lock at each open and release: off unless needed.
    public var tracksOpenFiles = false
    /// Names at the root of the backing tree the mount never shows nor
    /// touches (the crash layer's graveyard): lookup answers ENOENT, readdir
    /// skips them, and creating or renaming to them fails with EPERM.
    public var hiddenRootNames: [String] = []
    /// How long the first readdirplus reply of a listing may spend looking
    /// entries up before it sends names alone (see `readdir`).
    public var unadvisedLookupBudgetNanoseconds: Int64 = 1_000_000
    public init() {}

    /// Seconds the kernel may trust attributes and names.
    public var cacheTimeout: Double { aggressiveCaching ? 86_400 : 0 }
}
