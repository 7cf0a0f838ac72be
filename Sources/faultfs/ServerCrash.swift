// The server's side of a power-loss crash (CRASH.md, "Mechanics"): the
// `crash` command's thread aborts the FUSE connection, the serving loop
// ends, the dead mount is detached, the fault layer undoes the backing
// tree, and `Server.serve` mounts a new session at the same path.
import FaultRules
import FuseKit
import Glibc
import Synchronization
import System

/// Between the `crash` command (`begin`, on its own thread) and the end of
/// the session it aborts (`end`, on the serving thread).
final class CrashSwitch: Sendable {
    struct Pending {
        let request: CrashRequest
        /// The mount whose connection was aborted.
        let mount: MountEntry
    }
    private struct State {
        var mount: MountEntry?
        var sessionState: SessionState?
        var pending: Pending?
    }
    private let state = Mutex(State())
    /// Called when a crash the control file accepted cannot happen (the
    /// fault layer then accepts the next one).
    let refused = Mutex<(@Sendable () -> Void)?>(nil)

    /// The session now serving `mount` (nil: not found in the mount table).
    func serve(_ mount: MountEntry?, state sessionState: SessionState) {
        state.withLock { $0.mount = mount; $0.sessionState = sessionState }
    }

    /// `onCrash`: aborts the connection of the mount being served. The
    /// kernel then fails every request of that mount, and the serving loop
    /// ends (see `end`).
    func begin(_ request: CrashRequest) {
        // The fault layer calls this once the command's writer closed
        // `control` (or a second later); a moment more for the last reply
        // to leave before the connection dies.
        usleep(5_000)
        // The abort happens under the lock: once `end` sees a pending crash,
        // the connection is aborted for sure (dropping the kernel's caches
        // of a live connection whose loop has ended would wait forever).
        let aborted = state.withLock { s -> Bool in
            guard let mount = s.mount, s.pending == nil, s.sessionState?.isClosing == false else {
                logger.error("crash: refused: no live mount to crash (not answering yet, or unmounting)")
                return false
            }
            logger.notice("crash: aborting the FUSE connection of \(mount.mountPoint) (device \(mount.device))")
            if let problem = Self.abortConnection(of: mount) {
                logger.error("crash: \(problem); the mount serves on")
                return false
            }
            s.pending = Pending(request: request, mount: mount)
            return true
        }
        if !aborted { refused.withLock { $0 }?() }
    }

    /// The session has ended: the crash that ended it, if one did.
    func end() -> Pending? {
        state.withLock { s in
            defer { s = State() }
            return s.pending
        }
    }

    /// Aborts the connection through the fusectl file system when it is
    /// mounted (/sys/fs/fuse/connections), otherwise by a forced lazy
    /// unmount (MNT_FORCE makes FUSE abort the connection first). Returns
    /// what went wrong, or nil.
    static func abortConnection(of mount: MountEntry) -> String? {
        var st = stat()
        if stat("/sys/fs/fuse/connections", &st) == 0, Glibc.access("/sys/fs/fuse/connections/\(mount.device.split(separator: ":").last ?? "")", F_OK) == 0 {
            do throws(SessionError) {
                try Session.abortConnection(device: mount.device)
                return nil
            } catch {
                return error.description
            }
        }
        guard MountTable.topMount(at: mount.mountPoint)?.mountID == mount.mountID else {
            return "\(mount.mountPoint): the faultfs mount is not the topmost mount there"
        }
        guard umount2(mount.mountPoint, Int32(MNT_FORCE) | Int32(MNT_DETACH) | Int32(UMOUNT_NOFOLLOW)) == 0 else {
            return "forced unmount of \(mount.mountPoint): \(Errno.current)"
        }
        return nil
    }

    /// Detaches the dead mount (libfuse leaves a mount whose connection was
    /// aborted in place), and only it: nothing else mounted at that path is
    /// touched. Returns what went wrong, or nil.
    static func detach(_ mount: MountEntry) -> String? {
        let entries = MountTable.current()
        guard entries.contains(where: { $0.mountID == mount.mountID }) else { return nil }  // already detached
        guard MountTable.topMount(at: mount.mountPoint, in: entries)?.mountID == mount.mountID else {
            return "\(mount.mountPoint): something is mounted over the dead faultfs mount; not detaching it"
        }
        guard umount2(mount.mountPoint, Int32(MNT_DETACH) | Int32(UMOUNT_NOFOLLOW)) == 0 else {
            return "cannot detach the dead mount at \(mount.mountPoint): \(Errno.current)"
        }
        return nil
    }
}
