// Serving one mount: build the file system, mount, answer requests until a
// signal or an unmount, unmount.
import FuseKit
import Glibc
import System
import FaultLayer
import Foundation
import Passthrough
import Synchronization

/// The one place the served file system is assembled: the passthrough,
/// decorated by the fault layer, with the rules of `-o rules=FILE` applied.
/// The file system to serve, and for a block-mode image the re-resolver of
/// its `file=` rules (started by control writes; stop it at unmount).
func makeFileSystem(root: Int32, request: MountRequest) throws(CLIError) -> (any FileSystem, BlockResolver?) {
    let configuration = request.configuration
    let passthrough: PassthroughFileSystem
    let faults: FaultLayer
    final class ResolverSlot: Sendable { let resolver = Mutex<BlockResolver?>(nil) }  // set once the engine exists
    let resolverSlot = ResolverSlot()
    do {
        passthrough = try PassthroughFileSystem(root: root, options: configuration.passthroughOptions)
        var options = configuration.faultLayerOptions
        options.mountPoint = request.mountpoint
        options.source = request.source
        options.version = BuildInfo.version
        options.commit = BuildInfo.commit
        options.mountOptions = request.options
        options.afterControlApplied = { resolverSlot.resolver.withLock { $0 }?.wake() }
        if let block = BlockState(imageMount: request.mountpoint) { options.controlFacts = { block.controlFacts } }
        faults = try FaultLayer(wrapping: passthrough, tree: passthrough, options: options)
        resolverSlot.resolver.withLock { $0 = BlockResolver.forMount(request.mountpoint, engine: faults.engine) }
    } catch {
        throw CLIError("\(error)")
    }
    if let rulesFile = configuration.rulesFile {
        guard let text = try? String(contentsOfFile: rulesFile, encoding: .utf8) else {
            throw CLIError("cannot read rules file \(rulesFile): \(Errno.current.description)")
        }
        if case .failure(let error) = faults.applyControl(text) {
            throw CLIError("\(rulesFile): \(error)")
        }
    }
    return (faults.fileSystem, resolverSlot.resolver.withLock { $0 })
}

extension PassthroughFileSystem: BackingTree {}

extension MountConfiguration {
    var passthroughOptions: PassthroughOptions {
        var options = PassthroughOptions()
        options.writebackCache = writebackCache
        options.directIO = directIO
        options.aggressiveCaching = aggressiveCaching
        options.splice = splice
        options.fdCacheCapacity = fdCacheCapacity
        options.posixACLs = posixACLs
        options.accessTimes = accessTimes
        return options
    }

    var faultLayerOptions: FaultLayerOptions {
        var options = FaultLayerOptions()
        if let controlName { options.controlName = controlName }
        options.eventsPath = eventsFile
        options.writebackCache = writebackCache
        return options
    }

    /// One line for the log: what this mount does.
    var summary: String {
        "writeback=\(writebackCache ? "on" : "off") direct_io=\(directIO ? "on" : "off") "
            + "caching=\(aggressiveCaching ? "aggressive" : "none") splice=\(splice ? "on" : "off") "
            + "fdcache=\(fdCacheCapacity) acl=\(posixACLs ? "on" : "off") atime=\(accessTimes.rawValue) threads=\(maxIdleThreads) idle/\(maxThreads) max"
            + (controlName.map { " control=\($0)" } ?? "") + (rulesFile.map { " rules=\($0)" } ?? "")
            + (eventsFile.map { " events=\($0)" } ?? "")
            + " fuse: -o \(fuseOptions.joined(separator: ","))"
    }
}

enum Server {
    /// Mounts and serves until the mount ends. `ready` is the daemon's pipe
    /// to the waiting parent (nil in the foreground).
    static func serve(_ request: MountRequest, ready: ReadyPipe?) throws(CLIError) {
        let config = request.configuration
        // Modes of new files arrive with the caller's umask already applied;
        // ours must not strip more bits.
        umask(0)

        // Opened before mounting: for an in-place mount (SOURCE == MOUNTPOINT)
        // this fd is the only way back to the files underneath.
        let root = open(request.source, Int32(CSYS_O_PATH) | O_DIRECTORY | O_CLOEXEC)
        guard root >= 0 else { throw CLIError("cannot open \(request.source): \(Errno.current.description)") }
        var before = stat()
        guard stat(request.mountpoint, &before) == 0 else {
            close(root)
            throw CLIError("\(request.mountpoint): \(Errno.current.description)")
        }

        let (fileSystem, resolver) = try makeFileSystem(root: root, request: request)
        let session: Session
        do {
            session = try Session(fileSystem: fileSystem, options: config.fuseArguments)
            try session.mount(at: request.mountpoint)
        } catch {
            throw CLIError("\(error.description) (see the message above from libfuse)")
        }
        session.installSignalHandlers()
        logger.info("mounted \(request.source) at \(request.mountpoint): \(config.summary)")
        for note in config.notes { logger.notice("\(note)") }

        let failed = Atomic<Bool>(false)
        let mountpoint = request.mountpoint
        let deviceBefore = before.st_dev
        let state = session.state
        startThread {
            if let problem = waitUntilLive(mountpoint, deviceBefore: deviceBefore) {
                failed.store(true, ordering: .releasing)
                logger.error("\(problem)")
                ready?.fail(problem)
                // Signal handlers are installed: this ends `run` as a SIGTERM would.
                kill(getpid(), SIGTERM)
                return
            }
            logger.info("ready: \(mountpoint) answers")
            let mount = MountTable.faultFSMount(at: mountpoint)
            ready?.ready()
            if ready != nil { Daemon.silenceOutput() }
            if let mount { watchForDetach(mount, state: state) }
        }

        let signal = session.run(maxIdleThreads: config.maxIdleThreads, maxThreads: config.maxThreads)
        resolver?.stop()
        session.unmount()
        if failed.load(ordering: .acquiring) { throw CLIError("unmounted \(mountpoint): the mount never answered") }
        if signal > 0 {
            logger.info("unmounted \(mountpoint) on signal \(signal)")
        } else {
            logger.info("unmounted \(mountpoint)")
        }
    }

    /// Waits until `mount` leaves the mount table while the session still
    /// runs: a lazy unmount (`faultfs umount -l`, `umount -l`,
    /// `fusermount3 -uz`), or a plain one that is now waiting for requests.
    /// The kernel tells the daemon nothing then, and a request held by a
    /// `stall` would keep its caller, and the file system, forever. So held
    /// requests are let go (and no new one is held); the files still open
    /// are served until closed, and the session ends with the last of them.
    private static func watchForDetach(_ mount: MountEntry, state: SessionState) {
        let fd = open("/proc/self/mountinfo", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return }
        defer { close(fd) }
        while !state.isClosing {
            // The kernel flags mountinfo (POLLPRI) whenever the table changes;
            // the timeout only bounds how long a missed change could go unseen.
            var waitFor = pollfd(fd: fd, events: Int16(POLLPRI), revents: 0)
            _ = poll(&waitFor, 1, 2_000)
            guard let text = File.readText("/proc/self/mountinfo") else { return }
            // Reading the fd to its end is what re-arms POLLPRI.
            var sink = [UInt8](repeating: 0, count: 65536)
            _ = lseek(fd, 0, SEEK_SET)
            while read(fd, &sink, sink.count) > 0 {}
            if !MountTable.parse(text).contains(where: { $0.mountID == mount.mountID }) {
                if state.isClosing { return }
                logger.notice("\(mount.mountPoint) left the mount table (unmounted, or detached lazily): held requests released; the files still open are served until closed")
                state.markDetached()
                return
            }
        }
    }

    /// stat() of the mount point goes through the new mount once the loop
    /// answers; its device then differs from the directory underneath.
    /// Returns nil when live, else what went wrong.
    private static func waitUntilLive(_ mountpoint: String, deviceBefore: dev_t) -> String? {
        var after = stat()
        guard stat(mountpoint, &after) == 0 else {
            return "the new mount at \(mountpoint) does not answer: \(Errno.current.description)"
        }
        guard after.st_dev != deviceBefore else {
            return "\(mountpoint) is not a FUSE mount after mounting (same device as before)"
        }
        return nil
    }
}
