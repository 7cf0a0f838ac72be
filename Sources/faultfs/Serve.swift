// Serving one mount: build the file system, mount, answer requests until a
// signal or an unmount, unmount.
import FaultRules
import FuseKit
import Glibc
import System
import FaultLayer
import Foundation
import Passthrough
import Synchronization

/// The one place the served file system is assembled: the passthrough,
/// decorated by the fault layer, with the rules of `-o rules=FILE` applied.
/// Returns the fault layer (serve its `fileSystem`; a crash calls its
/// `crash`), and for a block-mode image the re-resolver of its `file=`
/// rules (started by control writes; stop it at unmount). `onCrash` is the
/// server's side of a `crash` command.
func makeFileSystem(root: Int32, request: MountRequest,
                    onCrash: (@Sendable (CrashRequest) -> Void)? = nil) throws(CLIError) -> (FaultLayer, PassthroughFileSystem, BlockResolver?) {
    let configuration = request.configuration
    let passthrough: PassthroughFileSystem
    let faults: FaultLayer
    final class ResolverSlot: Sendable { let resolver = Mutex<BlockResolver?>(nil) }  // set once the engine exists
    let resolverSlot = ResolverSlot()
    // A crash graveyard left by a daemon killed with -9 goes, crashsim or not.
    let rootDirectory = openat(root, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    if rootDirectory >= 0 { FaultLayer.removeCrashGraveyard(rootFD: rootDirectory); close(rootDirectory) }
    do {
        var options = configuration.faultLayerOptions
        var passthroughOptions = configuration.passthroughOptions
        // A crash aborts the connection: the files it held open are closed then.
        passthroughOptions.tracksOpenFiles = options.crashSimulation != nil
        passthrough = try PassthroughFileSystem(root: root, options: passthroughOptions)
        options.mountPoint = request.mountpoint
        options.source = request.source
        options.version = BuildInfo.version
        options.commit = BuildInfo.commit
        options.mountOptions = request.options
        options.onCrash = onCrash
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
    return (faults, passthrough, resolverSlot.resolver.withLock { $0 })
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
        if crashSimulation != nil { options.hiddenRootNames = [FaultLayer.crashGraveyardName] }
        return options
    }

    var faultLayerOptions: FaultLayerOptions {
        var options = FaultLayerOptions()
        if let controlName { options.controlName = controlName }
        options.eventsPath = eventsFile
        options.writebackCache = writebackCache
        options.crashSimulation = crashSimulation
        if let crashSpillDirectory { options.crashSpillDirectory = crashSpillDirectory }
        options.log = { logger.notice("\($0)") }
        return options
    }

    /// One line for the log: what this mount does.
    var summary: String {
        "writeback=\(writebackCache ? "on" : "off") direct_io=\(directIO ? "on" : "off") "
            + "caching=\(aggressiveCaching ? "aggressive" : "none") splice=\(splice ? "on" : "off") "
            + "fdcache=\(fdCacheCapacity) readahead=\(readahead) acl=\(posixACLs ? "on" : "off") atime=\(accessTimes.rawValue) threads=\(maxIdleThreads) idle/\(maxThreads) max"
            + (controlName.map { " control=\($0)" } ?? "") + (rulesFile.map { " rules=\($0)" } ?? "")
            + (eventsFile.map { " events=\($0)" } ?? "")
            + (crashSimulation.map { " crashsim=\($0.rawValue)" } ?? "") + (crashSpillDirectory.map { " crashsim_spill=\($0)" } ?? "")
            + " fuse: -o \(fuseOptions.joined(separator: ","))"
    }
}

/// Applies `-o readahead` to the live mount's bdi (it goes away with the
/// mount: nothing to restore). A failure is logged, not fatal.
func setReadahead(_ setting: Readahead, mount: MountEntry, backingDevice: dev_t?, quiet: Bool) {
    let disk = backingDevice.flatMap(DeviceKnobs.blockReadaheadKiB(of:))
    guard let kib = setting.kib(backingDiskKiB: disk) else { return }
    guard DeviceKnobs.bdiReadaheadKiB(mount.device) != kib else { return }
    do throws(Errno) {
        try DeviceKnobs.setBdiReadahead(mount.device, kib: kib)
        if !quiet {
            let why = setting == .auto ? " (the backing disk's is \(disk ?? 0) KiB; at most \(Readahead.largestReadKiB))" : ""
            logger.info("readahead: \(kib) KiB\(why)")
        }
    } catch {
        logger.notice("readahead: could not set /sys/class/bdi/\(mount.device)/read_ahead_kb to \(kib): \(error.description)")
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
        var backing = stat()
        let backingDevice: dev_t? = fstat(root, &backing) == 0 ? backing.st_dev : nil

        let crashes = CrashSwitch()
        let (faults, passthrough, resolver) = try makeFileSystem(root: root, request: request) { crashes.begin($0) }
        defer { resolver?.stop() }
        crashes.refused.withLock { $0 = { faults.cancelCrash() } }
        let mountpoint = request.mountpoint
        var crashNumber = 0
        // One session per connection: a crash aborts the connection, undoes
        // the backing tree and serves on with a new session at the same path.
        while true {
            if crashNumber > 0, let other = MountTable.faultFSMount(at: mountpoint) {
                // Never stack a second mount over one that should be gone.
                throw CLIError("crash: \(mountpoint) still has a faultfs mount (id \(other.mountID)); not mounting again: the daemon exits")
            }
            let session: Session
            do throws(SessionError) {
                session = try Session(fileSystem: faults.fileSystem, options: config.fuseArguments)
                try session.mount(at: mountpoint)
            } catch {
                if crashNumber == 0 { throw CLIError("\(error.description) (see the message above from libfuse)") }
                throw CLIError("crash: could not mount \(mountpoint) again (\(error.description)): the daemon exits, \(mountpoint) stays unmounted")
            }
            session.installSignalHandlers()
            if crashNumber == 0 {
                logger.info("mounted \(request.source) at \(mountpoint): \(config.summary)")
                for note in config.notes { logger.notice("\(note)") }
            } else {
                logger.info("crash: mounted \(request.source) at \(mountpoint) again")
            }

            let failed = Atomic<Bool>(false)
            let deviceBefore = before.st_dev
            let state = session.state
            let readyPipe = crashNumber == 0 ? ready : nil
            let firstSession = crashNumber == 0
            startThread {
                if let problem = waitUntilLive(mountpoint, deviceBefore: deviceBefore) {
                    failed.store(true, ordering: .releasing)
                    logger.error("\(problem)")
                    readyPipe?.fail(problem)
                    // Signal handlers are installed: this ends `run` as a SIGTERM would.
                    kill(getpid(), SIGTERM)
                    return
                }
                let mount = MountTable.faultFSMount(at: mountpoint)
                if let mount { setReadahead(config.readahead, mount: mount, backingDevice: backingDevice, quiet: !firstSession) }
                crashes.serve(mount, state: state)
                if let readyPipe {
                    logger.info("ready: \(mountpoint) answers")
                    readyPipe.ready()
                    Daemon.silenceOutput()
                } else if firstSession {
                    logger.info("ready: \(mountpoint) answers")
                }
                if let mount { watchForDetach(mount, state: state) }
            }

            let signal = session.run(maxIdleThreads: config.maxIdleThreads, maxThreads: config.maxThreads)
            let crash = crashes.end()
            if crash != nil {
                // The connection is aborted: nothing reaches us any more, but
                // the kernel still holds the dead mount's pages for the files
                // left open (and mapped): make it drop them.
                let dropped = session.dropCaches(of: passthrough.nodesKnownToKernel())
                logger.info("crash: the kernel dropped the cached pages of \(dropped) inode(s) of the dead mount")
            }
            session.unmount()
            if failed.load(ordering: .acquiring) { throw CLIError("unmounted \(mountpoint): the mount never answered") }
            guard let crash else {
                if signal > 0 {
                    logger.info("unmounted \(mountpoint) on signal \(signal)")
                } else {
                    logger.info("unmounted \(mountpoint)")
                }
                return
            }
            // The connection is aborted: no request runs, none will reach
            // the file system. Detach the dead mount, undo the backing tree,
            // then let the session go (its `destroy` forgets all node state).
            if let problem = CrashSwitch.detach(crash.mount) {
                throw CLIError("crash: \(problem): the daemon exits")
            }
            let report = faults.crash(crash.request)
            crashNumber += 1
            logger.notice("crash \(crashNumber) at \(mountpoint): \(report.summary)")
            withExtendedLifetime(session) {}
            if let signal = Session.stopSignal {
                logger.info("unmounted \(mountpoint) on signal \(signal) (during a crash)")
                return
            }
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
