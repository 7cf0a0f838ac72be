// `faultfs mount`: check the request, then either serve here (-f) or start
// the daemon and wait until the mount answers.
import ArgumentParser
import FaultRules
import Glibc
import System

struct MountCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mount",
        abstract: "Mount SOURCE at MOUNTPOINT (the default command; SOURCE may equal MOUNTPOINT).",
        discussion: """
            faultfs options (-o): writeback (default), nowriteback, direct_io, nocache,
            nosplice, acl (default: POSIX ACLs where the backing file system has them),
            noacl, relatime (default), strictatime, noatime, threads=N, fdcache=N,
            readahead=auto|SIZE (default auto: the backing disk's, at most 1M),
            control=NAME, rules=FILE, events=FILE. remount (with ro, rw, nosuid,
            noexec, ...) changes the flags of a live faultfs mount.
            Power loss: crashsim (names durable after an fsync of their directory,
            as POSIX promises) or crashsim=journal (like ext4: after any fsync, or
            5 s), crashsim_spill=DIR (where undo data goes; default /var/tmp); then
            `echo crash > MOUNTPOINT/.faultfs/control` undoes what is not durable.
            Other options go to libfuse (allow_other, fsname=..., ro, noexec, ...);
            mount(8)-only options (auto, noauto, user, _netdev, nofail, defaults,
            x-*, ...) are ignored. default_permissions is always on.
            """)

    @Flag(name: [.short, .long], help: "Stay in the foreground and log to stderr.")
    var foreground = false

    @Option(name: .customShort("o", allowingJoined: true), parsing: .unconditionalSingleValue,
            help: ArgumentHelp("Comma-separated mount options (repeatable).", valueName: "OPTS"))
    var options: [String] = []

    @Option(help: ArgumentHelp("Maximum worker threads (default 64).", valueName: "N"))
    var threads: Int?

    @Option(help: ArgumentHelp("Append log lines to FILE (default: stderr with -f, else syslog).", valueName: "FILE"))
    var log: String?

    /// Set only by `Daemon.startAndWait` on the process it starts.
    @Option(name: .customLong("ready-fd"), help: .hidden)
    var readyFD: Int32?

    @Option(help: ArgumentHelp("Block mode: make this file system (\(BlockFileSystem.names)) on a disk image served by faultfs and mount it at TARGET (the only argument); -o then holds its own mount options.", valueName: "FS"))
    var fs: String?

    @Option(help: ArgumentHelp("Block mode: the image's size (default 1G).", valueName: "SIZE"))
    var size: String?

    @Option(help: ArgumentHelp("Block mode: use (or create) this image file and keep it after umount.", valueName: "PATH"))
    var image: String?

    /// Block mode: faultfs options for the daemon serving the image (`faultfs run --fs` passes events=FILE).
    @Option(name: .customLong("daemon-options"), help: .hidden)
    var daemonOptions: String?

    @Argument(help: "The backing directory (block mode: TARGET).")
    var source: String

    @Argument(help: ArgumentHelp("Where to mount it.", valueName: "mountpoint"))
    var mountpointArgument: String?
    var mountpoint: String { mountpointArgument ?? "" }

    func validate() throws {
        if fs == nil, mountpointArgument == nil { throw ValidationError("Missing expected argument '<mountpoint>'") }
        if fs == nil, size != nil || image != nil { throw ValidationError("--size and --image need --fs") }
        if fs != nil, mountpointArgument != nil { throw ValidationError("with --fs, give only TARGET (the file system is made on an image faultfs serves)") }
    }

    func run() throws {
        if fs != nil {
            try reportingFailures { try BlockMode.mount(blockRequest()) }
        } else if let readyFD {
            try runDaemon(ready: ReadyPipe(fd: readyFD))
        } else if RemountFlags.isRemount(options) {
            try reportingFailures { try remount() }
        } else {
            try reportingFailures { try mount() }
        }
    }

    /// From the command line: serve here with -f, else start the daemon.
    private func mount() throws(CLIError) {
        let request = try checkRequest()
        if foreground {
            try setUpLogging(request.logFile.map(LogDestination.file) ?? .standardError)
            try Server.serve(request, ready: nil)
        } else {
            try Daemon.startAndWait { daemonArguments(request, readyFD: $0) }
        }
    }

    /// `-o remount,...` (also from mount(8) through mount.fuse3): changes
    /// the flags of the faultfs mount at MOUNTPOINT; its daemon keeps serving.
    private func remount() throws(CLIError) {
        let mountpoint = try existingDirectory(self.mountpoint, role: "MOUNTPOINT")
        guard MountTable.faultFSMount(at: mountpoint) != nil else {
            throw CLIError("\(mountpoint) is not a faultfs mount: nothing to remount")
        }
        var info = statvfs()
        guard statvfs(mountpoint, &info) == 0 else { throw CLIError("\(mountpoint): \(Errno.current.description)") }
        let (flags, ignored) = RemountFlags.parse(options, current: RemountFlags.current(fromStatvfs: UInt(info.f_flag)))
        guard Glibc.mount("faultfs", mountpoint, "fuse.faultfs", flags, nil) == 0 else {
            throw CLIError("remount \(mountpoint): \(Errno.current.description)")
        }
        if !ignored.isEmpty {
            printError("faultfs: remount \(mountpoint): kept as mounted (a remount cannot change them): \(ignored.joined(separator: ","))")
        }
    }

    /// The daemon started by `Daemon.startAndWait`. Its errors go through the
    /// pipe: the waiting parent prints them (once).
    private func runDaemon(ready: ReadyPipe) throws {
        var loggingIsSetUp = false
        do {
            let request = try checkRequest()
            Daemon.detach()
            try setUpLogging(request.logFile.map(LogDestination.file) ?? .syslog)
            loggingIsSetUp = true
            try Server.serve(request, ready: ready)
        } catch {
            ready.fail(error.description)
            if loggingIsSetUp { logger.error("\(error.description)") }
            throw ExitCode.failure
        }
    }

    /// The same mount, in the foreground, with every path absolute (the
    /// daemon works from /).
    private func daemonArguments(_ request: MountRequest, readyFD: Int32) -> [String] {
        var arguments = ["mount", "--foreground", "--ready-fd", String(readyFD)]
        for group in options { arguments += ["-o", group] }
        if let threads { arguments += ["--threads", String(threads)] }
        if let logFile = request.logFile { arguments += ["--log", logFile] }
        return arguments + ["--", request.source, request.mountpoint]
    }

    /// Validates the paths and options; everything `Server.serve` needs.
    private func checkRequest() throws(CLIError) -> MountRequest {
        let source = try existingDirectory(self.source, role: "SOURCE")
        let mountpoint = try existingDirectory(self.mountpoint, role: "MOUNTPOINT")
        if let existing = MountTable.faultFSMount(at: mountpoint) {
            throw CLIError("\(mountpoint) is already a faultfs mount (of \(existing.source)); unmount it first: faultfs umount \(mountpoint)")
        }
        var configuration: MountConfiguration
        do {
            configuration = try MountOptionParser.parse(options, threads: threads, source: source)
        } catch {
            throw CLIError(error.description)
        }
        // The daemon works from /: files named relative to the caller's cwd must be absolute.
        configuration.rulesFile = configuration.rulesFile.map(Path.absolute)
        configuration.eventsFile = configuration.eventsFile.map(Path.absolute)
        configuration.crashSpillDirectory = configuration.crashSpillDirectory.map(Path.absolute)
        if let spill = configuration.crashSpillDirectory {
            var st = stat()
            guard stat(spill, &st) == 0 else { throw CLIError("option crashsim_spill=\(spill): \(Errno.current.description)") }
            guard (st.st_mode & S_IFMT) == S_IFDIR else { throw CLIError("option crashsim_spill=\(spill): not a directory") }
        }
        return MountRequest(source: source, mountpoint: mountpoint, configuration: configuration,
                            logFile: log.map(Path.absolute),
                            options: options.flatMap(MountOptionParser.splitOptions).filter { !$0.isEmpty })
    }

    private func existingDirectory(_ path: String, role: String) throws(CLIError) -> String {
        let resolved: String
        do {
            resolved = try Path.canonical(path)
        } catch where error.rawValue == ENOTCONN {
            throw CLIError("\(role) \(path): \(error) (a FUSE mount whose daemon died? run: faultfs umount \(path))")
        } catch {
            throw CLIError("\(role) \(path): \(error)")
        }
        var info = stat()
        guard stat(resolved, &info) == 0 else { throw CLIError("\(role) \(path): \(Errno.current.description)") }
        guard info.st_mode & S_IFMT == S_IFDIR else { throw CLIError("\(role) \(path) is not a directory") }
        return resolved
    }
}

extension MountCommand {
    /// `--fs FS [--size SIZE] [--image PATH] [-o OPTS] TARGET`, checked.
    private func blockRequest() throws(CLIError) -> BlockMountRequest {
        guard let fileSystem = fs.flatMap(BlockFileSystem.init(rawValue:)) else {
            throw CLIError("unknown --fs \(fs ?? ""); expected one of \(BlockFileSystem.names)")
        }
        let bytes: Int64
        if let size {
            guard let parsed = parseSize(Substring(size)), parsed > 0 else {
                throw CLIError("bad --size \(size); expected a size such as 1G or 512M")
            }
            bytes = parsed
        } else {
            bytes = 1 << 30
        }
        let target: String
        do { target = try Path.canonical(source) } catch { throw CLIError("TARGET \(source): \(error.description)") }
        var imagePath: String?
        if let image {
            let absolute = Path.absolute(image)
            let slash = absolute.lastIndex(of: "/")!
            let directory = slash == absolute.startIndex ? "/" : String(absolute[..<slash])
            let resolved: String
            do { resolved = try Path.canonical(directory) } catch {
                throw CLIError("--image \(image): its directory \(directory): \(error.description)")
            }
            imagePath = (resolved == "/" ? "" : resolved) + String(absolute[slash...])
        }
        // `-o crashsim[=...]` is the disk's (the faultfs mount serving the image), not the file system's.
        let isCrashOption = { (option: String) in option == "crashsim" || option.hasPrefix("crashsim=") || option.hasPrefix("crashsim_") }
        let each = options.flatMap { $0.split(separator: ",").map(String.init) }
        var request = BlockMountRequest(fileSystem: fileSystem, size: bytes, image: imagePath,
                                        fsOptions: each.filter { !isCrashOption($0) }, target: target)
        request.daemonOptions = (daemonOptions.map { $0.split(separator: ",").map(String.init) } ?? []) + each.filter(isCrashOption)
        return request
    }
}

/// A checked mount request: canonical paths and parsed options.
struct MountRequest: Sendable {
    var source: String
    var mountpoint: String
    var configuration: MountConfiguration
    var logFile: String?
    /// The `-o` options as given, one per element (for `.faultfs/status`).
    var options: [String] = []
}
