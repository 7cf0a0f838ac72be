import CFuse
import Glibc
import System
import Synchronization

/// What a file system may ask of its session from any thread: whether the
/// session is ending (so a request held on purpose lets go), and what the
/// kernel agreed to at init.
public final class SessionState: Sendable {
    private let closing = Atomic<Bool>(false)
    private let sessionAddress = Atomic<UInt>(0)
    private let negotiatedBits = Atomic<UInt32>(0)

    public init() {}

    /// True once a signal or an unmount ends the session.
    public var isClosing: Bool {
        if closing.load(ordering: .acquiring) { return true }
        let address = sessionAddress.load(ordering: .acquiring)
        guard address != 0, let se = OpaquePointer(bitPattern: address) else { return false }
        return fuse_session_exited(se) != 0
    }

    /// Capabilities in force (set after init).
    public internal(set) var negotiated: Capabilities {
        get { Capabilities(rawValue: negotiatedBits.load(ordering: .acquiring)) }
        set { negotiatedBits.store(newValue.rawValue, ordering: .releasing) }
    }

    /// The kernel leaves clearing setuid/setgid bits on write, truncate and
    /// chown to the file system (FUSE_HANDLE_KILLPRIV_V2), and does not ask
    /// for "security.capability" before each write.
    public var fileSystemKillsPrivileges: Bool { ffs_killpriv_v2_enabled() != 0 }

    /// Tells the kernel to forget the attributes it caches for `node` (after
    /// the file system changed them on its own, e.g. cleared a setuid bit).
    /// Safe inside a request on that node: attribute invalidation takes no
    /// inode lock.
    public func invalidateAttributes(of node: NodeID) {
        let address = sessionAddress.load(ordering: .acquiring)
        guard address != 0, let se = OpaquePointer(bitPattern: address) else { return }
        _ = fuse_lowlevel_notify_inval_inode(se, node, -1, 0)
    }

    /// Tells the kernel that `node`'s file is at least `size` bytes long and
    /// ends with `lastByte`. With the writeback cache the kernel ignores the
    /// size in attribute replies for regular files; a store notification is
    /// how a file the daemon itself appends to can grow (the kernel grows the
    /// size only for a store of at least one byte, so the last byte is sent).
    /// Does nothing if the kernel holds no inode for `node`.
    public func extendSize(of node: NodeID, to size: Int64, lastByte: UInt8) {
        let address = sessionAddress.load(ordering: .acquiring)
        guard address != 0, size > 0, let se = OpaquePointer(bitPattern: address) else { return }
        var byte = lastByte
        withUnsafeMutablePointer(to: &byte) { pointer in
            var one = fuse_bufvec()
            one.count = 1
            one.buf.size = 1
            one.buf.mem = UnsafeMutableRawPointer(pointer)
            _ = fuse_lowlevel_notify_store(se, node, off_t(size - 1), &one, fuse_buf_copy_flags(rawValue: 0))
        }
    }

    /// The mount was detached (a lazy unmount): `isClosing` turns true, so
    /// held requests let go while the files still open are served on.
    public func markDetached() { markClosing() }

    /// Shared mmap of files served with `direct_io` works
    /// (FUSE_DIRECT_IO_ALLOW_MMAP, Linux >= 6.6).
    public var directIOMmapAllowed: Bool { ffs_direct_io_mmap_enabled() != 0 }

    /// Tells the kernel to drop the cached pages of `node` in
    /// `offset..<offset+length` (and its attributes). Safe inside a write
    /// request on that node: page invalidation takes no inode lock; it only
    /// waits for reads in flight, which other worker threads answer. Never
    /// call it from a writeback write (it would wait for its own pages).
    public func invalidateData(of node: NodeID, offset: off_t, length: Int) {
        let address = sessionAddress.load(ordering: .acquiring)
        guard address != 0, let se = OpaquePointer(bitPattern: address) else { return }
        _ = fuse_lowlevel_notify_inval_inode(se, node, offset, off_t(length))
    }

    func attach(_ se: OpaquePointer?) { sessionAddress.store(UInt(bitPattern: se.map { Int(bitPattern: UnsafeRawPointer($0)) } ?? 0), ordering: .releasing) }
    func markClosing() { closing.store(true, ordering: .releasing) }
}

public struct SessionError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// One FUSE session: create, mount, serve until stopped, unmount.
public final class Session {
    private let dispatcher: Dispatcher
    private var operations: fuse_lowlevel_ops
    private let se: OpaquePointer
    private var mounted = false
    public let state: SessionState

    /// `options` are FUSE command-line options, e.g. ["-o", "allow_other,fsname=x"].
    public init(fileSystem: any FileSystem, options: [String]) throws(SessionError) {
        state = SessionState()
        dispatcher = Dispatcher(fs: fileSystem, state: state)
        operations = makeOperations()
        let argv = (["faultfs"] + options).map { strdup($0) }
        defer { argv.forEach { free($0) } }
        var cargv: [UnsafeMutablePointer<CChar>?] = argv + [nil]
        let userdata = ObjectAddress.of(dispatcher)  // `self` keeps the dispatcher alive
        let created = withUnsafePointer(to: &operations) { ops in
            cargv.withUnsafeMutableBufferPointer { ffs_session_new(Int32(argv.count), $0.baseAddress, ops, userdata) }
        }
        guard let created else { throw SessionError("fuse: could not create a session with options \(options)") }
        se = created
        state.attach(se)
    }

    deinit {
        ffs_stop_signal_forget(se)
        if mounted { fuse_session_unmount(se) }
        state.attach(nil)
        fuse_session_destroy(se)
    }

    public func mount(at path: String) throws(SessionError) {
        guard fuse_session_mount(se, path) == 0 else { throw SessionError("fuse: could not mount on \(path)") }
        mounted = true
        // Our own /dev/fuse I/O hooks: they ask for FUSE_HANDLE_KILLPRIV_V2
        // (see the shim), which spares every write(2) a getxattr round trip,
        // and for FUSE_DIRECT_IO_ALLOW_MMAP.
        let rc = ffs_install_io(se)
        guard rc == 0 else { throw SessionError("fuse: could not install the connection I/O (\(Errno(-rc)))") }
    }

    /// SIGINT, SIGTERM and SIGHUP end `run` cleanly from now on; SIGPIPE is
    /// ignored. The handlers stay for the process's life: a signal that
    /// comes while no session runs (between a crash's two sessions) ends the
    /// next session as soon as it is here.
    public func installSignalHandlers() {
        _ = ffs_install_stop_handlers()
        ffs_stop_signal_ends(se)
    }

    /// The stop signal received by the process (any session), or nil.
    public static var stopSignal: Int32? { ffs_stop_signal() > 0 ? ffs_stop_signal() : nil }

    /// Serves requests on a pool of worker threads until a signal, an
    /// unmount or an abort of the connection. Returns 0 or the number of
    /// the signal that stopped it.
    public func run(maxIdleThreads: Int, maxThreads: Int) -> Int32 {
        let rc = ffs_session_loop_mt(se, UInt32(maxIdleThreads), UInt32(maxThreads))
        state.markClosing()
        return Session.stopSignal ?? rc
    }

    /// After an abort (see `abortConnection`), before `unmount`: makes the
    /// kernel drop the cached pages and attributes of `nodes`, so that a
    /// process still holding a file of the dead mount gets ENOTCONN, not the
    /// pages the crash discarded. (Dirty pages are "written back" first, to
    /// a connection that fails them.) Returns how many the kernel still had.
    public func dropCaches(of nodes: [NodeID]) -> Int {
        nodes.reduce(0) { count, node in count + (fuse_lowlevel_notify_inval_inode(se, node, 0, 0) == 0 ? 1 : 0) }
    }

    /// Unmounts (after an abort, libfuse leaves the dead mount in place: the
    /// caller detaches it, see `abortConnection`).
    public func unmount() {
        guard mounted else { return }
        // The device fd closes: a notification from now on (the file
        // system's, while a crash undoes the tree) would write to a closed,
        // or reused, fd.
        state.attach(nil)
        fuse_session_unmount(se)
        mounted = false
    }

    /// Aborts the FUSE connection of the mount whose device is
    /// `major:minor` (mountinfo's field 3): the kernel fails every pending
    /// and future request of that mount, its dirty pages never reach the
    /// daemon, and `run` returns. (What the kernel does to the files still
    /// open: docs/kernel-behaviour.md, "Power loss".)
    public static func abortConnection(device: String) throws(SessionError) {
        let parts = device.split(separator: ":")
        guard parts.count == 2, parts[0] == "0", let minor = UInt32(parts[1]) else {
            throw SessionError("fuse: \(device) is not the device of a FUSE mount")
        }
        let path = "/sys/fs/fuse/connections/\(minor)/abort"
        let fd = Glibc.open(path, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { throw SessionError("fuse: cannot open \(path): \(Errno.current)") }
        defer { close(fd) }
        guard write(fd, "1", 1) == 1 else { throw SessionError("fuse: cannot write \(path): \(Errno.current)") }
    }

}
