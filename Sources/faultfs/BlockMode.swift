// Block mode: `faultfs mount --fs ext4|xfs|btrfs TARGET` puts a real file
// system at TARGET whose disk is an image file on a faultfs mount, reached
// through a loop device. Every step is undone in reverse by `teardown`,
// which works from what the system shows (mount table, loop devices'
// backing files), not from what a crashed run meant to do, so it also
// finishes a half-done mount or a half-done unmount.
import FaultRules
import FuseKit
import Glibc
import System

/// The files of one target's block mode, in `/var/lib/faultfs/block/<name>/`:
/// on disk rather than under /run (tmpfs), because the image may be large and
/// should cost disk, not memory. `backing/` holds the image, `mnt/` is the
/// faultfs mount of `backing/`, `facts` records what was set up.
struct BlockState {
    static let root = "/var/lib/faultfs/block"
    static let defaultImageName = "disk.img"

    let directory: String
    var backing: String { directory + "/backing" }
    var mountpoint: String { directory + "/mnt" }
    var factsFile: String { directory + "/facts" }

    init(target: String) {
        directory = Self.root + "/" + blockStateName(forTarget: target)
    }

    /// The state whose `mnt/` is `mountpoint`: nil unless the faultfs mount
    /// at `mountpoint` serves a block-mode image.
    init?(imageMount mountpoint: String) {
        guard mountpoint.hasPrefix(Self.root + "/"), mountpoint.hasSuffix("/mnt") else { return nil }
        directory = String(mountpoint.dropLast(4))
        guard access(factsFile, F_OK) == 0 else { return nil }
    }

    /// What `cat control` of the image's mount says first (read at each
    /// read: the loop device is attached after the daemon starts).
    var controlFacts: [String] {
        let facts = facts
        var lines = ["# block mode: \(facts["fs"] ?? "?") at \(facts["target"] ?? "?") on \(facts["loop"] ?? "(no loop device yet)")"
                     + " (sector size \(facts["sector_size"] ?? "?"), direct I/O \(facts["direct_io"] ?? "?"))"]
        lines.append("# image: \(facts["image"] ?? "?"), \(facts["size"] ?? "?") bytes, served by the faultfs mount \(mountpoint)")
        return lines
    }

    /// What was set up, as `key=value` lines (kept up to date step by step).
    var facts: [String: String] {
        get {
            var result: [String: String] = [:]
            for line in (File.readText(factsFile) ?? "").split(separator: "\n") {
                guard let equals = line.firstIndex(of: "=") else { continue }
                result[String(line[..<equals])] = String(line[line.index(after: equals)...])
            }
            return result
        }
        nonmutating set {
            let text = newValue.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)\n" }.joined()
            _ = try? writeWholeFile(factsFile, text)
        }
    }

    /// The image as the loop device sees it: inside the faultfs mount.
    var imageThroughMount: String { mountpoint + "/" + (facts["image_name"] ?? Self.defaultImageName) }
}

/// A request for `faultfs mount --fs`.
struct BlockMountRequest {
    var fileSystem: BlockFileSystem
    var size: Int64
    var image: String?          // --image: the user's image, kept at unmount
    var fsOptions: [String]     // -o: passed to mount(8) for the inner file system
    var target: String
    /// -o for the faultfs daemon serving the image (e.g. events=FILE).
    var daemonOptions: [String] = []
}

enum BlockMode {
    /// Sector size of the loop device. On Linux 6.18 both 512 and 4096
    /// keep direct I/O on over a faultfs file (/sys/block/loopN/loop/dio is
    /// 1); 512, as most disks report, lets `sectors=` name any 512-byte
    /// sector, and mkfs picks its own block size anyway. Without
    /// --direct-io=on the loop device would write through its own page
    /// cache (dio 0), and requests would reach faultfs merged and late.
    static let sectorSize = 512

    // MARK: mount

    static func mount(_ request: BlockMountRequest) throws(CLIError) {
        let target = request.target
        try checkBeforeMount(request)
        let state = BlockState(target: target)
        if access(state.directory, F_OK) == 0 {
            throw CLIError("\(state.directory) exists (an earlier block mount of \(target) was not undone): run faultfs umount \(target)")
        }
        do throws(CLIError) {
            try step("create the state directory \(state.directory)") {
                try makeDirectories(["/var/lib/faultfs", BlockState.root, state.directory, state.mountpoint])
            }
            var facts = ["target": target, "fs": request.fileSystem.rawValue,
                         "sector_size": String(sectorSize), "fs_options": request.fsOptions.joined(separator: ",")]
            var makeFileSystem = true
            let backing: String
            if let image = request.image {
                let slash = image.lastIndex(of: "/")!
                backing = slash == image.startIndex ? "/" : String(image[..<slash])
                facts["image_name"] = String(image[image.index(after: slash)...])
                facts["image"] = image
                facts["keep_image"] = "1"
                var info = stat()
                if stat(image, &info) == 0 {
                    guard info.st_mode & S_IFMT == S_IFREG else { throw CLIError("--image \(image) is not a regular file") }
                    makeFileSystem = info.st_size == 0
                    facts["size"] = String(info.st_size)
                }
            } else {
                backing = state.backing
                facts["image_name"] = BlockState.defaultImageName
                facts["image"] = state.backing + "/" + BlockState.defaultImageName
                try step("create the state directory \(state.directory)") { try makeDirectories([backing]) }
            }
            facts["size"] = facts["size"] ?? String(request.size)
            state.facts = facts
            let image = facts["image"]!
            if makeFileSystem {
                try step("create the image \(image)") { try createSparseFile(image, size: request.size) }
            }
            try step("mount faultfs on \(state.mountpoint)") {
                let options = request.daemonOptions.isEmpty ? [] : ["-o", request.daemonOptions.joined(separator: ",")]
                try Daemon.startAndWait { ["mount", "--foreground", "--ready-fd", String($0)] + options + ["--", backing, state.mountpoint] }
            }
            // Kept for teardown: a stopped daemon cannot answer its status file then.
            facts["daemon_pid"] = UnmountCommand.daemons(servingAt: state.mountpoint, controlDirectory: ".faultfs").first.map(String.init)
            state.facts = facts
            let loop = try step("attach a loop device (losetup)") { () throws -> String in
                let result = runTool(["losetup", "--find", "--show", "--direct-io=on",
                                      "--sector-size", String(sectorSize), state.imageThroughMount])
                guard result.status == 0, result.output.hasPrefix("/dev/loop") else {
                    throw CLIError(result.failure)
                }
                return String(result.output.split(separator: "\n")[0])
            }
            facts["loop"] = loop
            facts["direct_io"] = File.readText("/sys/block/\(loop.dropFirst(5))/loop/dio")?.first == "1" ? "on" : "off"
            state.facts = facts
            if makeFileSystem {
                try step("make the file system (\(request.fileSystem.mkfs))") {
                    let result = runTool([request.fileSystem.mkfs] + request.fileSystem.mkfsArguments + [loop])
                    guard result.status == 0 else { throw CLIError(result.failure) }
                }
            }
            try step("mount \(request.fileSystem.rawValue) on \(target)") {
                var arguments = ["mount", "-t", request.fileSystem.rawValue]
                if !request.fsOptions.isEmpty { arguments += ["-o", request.fsOptions.joined(separator: ",")] }
                let result = runTool(arguments + [loop, target])
                guard result.status == 0 else { throw CLIError(result.failure) }
            }
        } catch {
            let undone = teardown(target: target, state: state)
            throw CLIError(error.description + (undone.isEmpty ? "; nothing was left behind"
                : "; undoing the earlier steps failed too: " + undone.joined(separator: "; ")))
        }
    }

    /// Refusals that need no undoing.
    private static func checkBeforeMount(_ request: BlockMountRequest) throws(CLIError) {
        let fs = request.fileSystem
        if request.size < fs.minimumSize, request.image == nil || access(request.image!, F_OK) != 0 {
            throw CLIError("--size \(request.size) bytes is too small for \(fs.rawValue): at least \(fs.minimumSize) bytes (\(fs.minimumSize >> 20) MiB)")
        }
        for tool in [fs.mkfs, "losetup", "mount"] where findTool(tool) == nil {
            let package = tool == fs.mkfs ? fs.package : "mount"
            throw CLIError("\(tool) not found: install the package \(package) (apt-get install \(package))")
        }
        var info = stat()
        guard stat(request.target, &info) == 0, info.st_mode & S_IFMT == S_IFDIR else {
            throw CLIError("TARGET \(request.target) is not a directory")
        }
        if let top = MountTable.topMount(at: request.target) {
            throw CLIError("TARGET \(request.target) is already a mount point (\(top.fileSystemType) from \(top.source)); unmount it first")
        }
    }

    /// Runs one step; its failure names the step.
    private static func step<T>(_ name: String, _ body: () throws -> T) throws(CLIError) -> T {
        do {
            return try body()
        } catch {
            throw CLIError("block mount failed at step \"\(name)\": \(error)")
        }
    }

    // MARK: unmount

    /// Whether `target` has block-mode state (set up, or half torn down).
    static func hasState(target: String) -> Bool {
        access(BlockState(target: target).directory, F_OK) == 0
    }

    /// `faultfs umount TARGET` for a block-mode target.
    static func unmount(target: String) throws(CLIError) {
        let problems = teardown(target: target, state: BlockState(target: target))
        if !problems.isEmpty {
            throw CLIError("block unmount of \(target) incomplete: " + problems.joined(separator: "; ") + " (run faultfs umount \(target) again once fixed)")
        }
    }

    /// Undoes whatever of a block mount exists, in reverse order: the inner
    /// file system, the loop device(s) over our image, the faultfs mount,
    /// the state directory. Each step looks at the system first, so running
    /// it twice is harmless. Returns what could not be undone.
    @discardableResult
    static func teardown(target: String, state: BlockState) -> [String] {
        var problems: [String] = []
        let imagePath = state.imageThroughMount
        let loops = loopDevices(backedBy: imagePath)
        let daemons = state.facts["daemon_pid"].flatMap { pid_t($0) }.map { [$0] }?.filter(isFaultFSDaemon) ?? []
        let faultMount = MountTable.faultFSMount(at: state.mountpoint)
        // A daemon that died (kill -9) leaves the connection to fail every
        // request; abort it explicitly in case it is only half dead, or
        // stopped (SIGSTOP), so the inner file system's last writes fail
        // instead of waiting forever.
        let stopped = daemons.filter(isStopped)
        if daemons.isEmpty || !stopped.isEmpty, let faultMount {
            // The mount table names the device even when the mount is dead.
            _ = try? Session.abortConnection(device: faultMount.device)
            for pid in stopped { kill(pid, SIGCONT) }  // it then finds its connection gone and exits
        }

        // 1. The inner file system, if it is ours (its device is one of our loops).
        // The re-resolver stops once its records are gone; a pass it is in
        // holds a file open for a moment, hence the few retries on EBUSY.
        FileRuleRecord.remove(ruleID: nil, inState: state.directory)
        if let top = MountTable.topMount(at: target), loops.contains(top.source) {
            var unmounted = umount2(target, 0) == 0
            for _ in 0..<10 where !unmounted && errno == EBUSY {
                usleep(2 * useconds_t(BlockResolver.periodNanoseconds / 1000))
                unmounted = umount2(target, 0) == 0
            }
            if !unmounted {
                let code = errno
                problems.append(code == EBUSY
                    ? "\(target) is busy: a process has a file open or its working directory there"
                    : "cannot unmount \(target): \(Errno(code).description)")
                return problems  // the loop and the image are still in use
            }
        }
        // 2. The loop devices over our image (only those: never another one).
        for loop in loops {
            let result = runTool(["losetup", "-d", loop])
            if result.status != 0 { problems.append("losetup -d \(loop): \(result.failure)") }
        }
        // Detaching is deferred while the device is still open (udev, a
        // late close): wait until the loop lets go of the image.
        for _ in 0..<200 where !loopDevices(backedBy: imagePath).isEmpty { usleep(25_000) }
        let stillAttached = loopDevices(backedBy: imagePath)
        if !stillAttached.isEmpty {
            problems.append("loop device \(stillAttached.joined(separator: " ")) still holds \(imagePath)")
            return problems
        }
        // 3. The faultfs mount.
        if MountTable.faultFSMount(at: state.mountpoint) != nil {
            if umount2(state.mountpoint, 0) != 0, umount2(state.mountpoint, Int32(MNT_DETACH)) != 0 {
                problems.append("cannot unmount \(state.mountpoint): \(Errno.current.description)")
                return problems
            }
            for _ in 0..<200 where daemons.contains(where: { kill($0, 0) == 0 && !isZombie($0) }) { usleep(50_000) }
        }
        // 4. The state directory: only our own names, never recursively.
        if MountTable.topMount(at: state.mountpoint) == nil {
            if state.facts["keep_image"] != "1" {
                unlink(state.backing + "/" + BlockState.defaultImageName)
                rmdir(state.backing)
            }
            unlink(state.factsFile)
            rmdir(FileRuleRecord.directory(ofState: state.directory))
            rmdir(state.mountpoint)
            if rmdir(state.directory) != 0 && errno != ENOENT {
                problems.append("cannot remove \(state.directory): \(Errno.current.description)")
            }
        }
        return problems
    }

    // MARK: the system

    /// /dev/loopN whose backing file is `path` (/sys/block/loopN/loop/backing_file).
    static func loopDevices(backedBy path: String) -> [String] {
        (File.names(inDirectory: "/sys/block") ?? []).filter { name in
            name.hasPrefix("loop") && File.readText("/sys/block/\(name)/loop/backing_file")?.trimmingNewline() == path
        }.map { "/dev/" + $0 }.sorted()
    }

    /// The image file behind a loop device, as the loop device names it.
    static func backingFile(ofLoop device: String) -> String? {
        guard device.hasPrefix("/dev/loop") else { return nil }
        return File.readText("/sys/block/\(device.dropFirst(5))/loop/backing_file")?.trimmingNewline()
    }

    /// Whether `pid` still is a faultfs process (the recorded pid may have been reused).
    private static func isFaultFSDaemon(_ pid: pid_t) -> Bool { ProcFS.cmdline(pid: pid)?.first?.hasSuffix("faultfs") == true }

    /// The State line of /proc/PID/status: "T (stopped)", "t (tracing stop)", "Z (zombie)".
    private static func state(_ pid: pid_t) -> Character? { ProcFS.status(pid: pid)?["State"]?.first }
    private static func isStopped(_ pid: pid_t) -> Bool { state(pid) == "T" || state(pid) == "t" }
    private static func isZombie(_ pid: pid_t) -> Bool { state(pid).map { $0 == "Z" } ?? true }
}

// MARK: small helpers

extension String {
    func trimmingNewline() -> String {
        var s = self
        while s.hasSuffix("\n") { s.removeLast() }
        return s
    }
}

/// A finished tool run: exit status and everything it printed (stdout and stderr).
struct ToolResult {
    var status: Int32
    var output: String
    var command: String
    /// "mkfs.xfs: <its last lines>" for an error message.
    var failure: String {
        let lines = output.split(separator: "\n").suffix(3)
            .map { $0.split(whereSeparator: { $0 == " " || $0 == "\t" }).joined(separator: " ") }
            .filter { !$0.isEmpty }.joined(separator: " / ")
        return "\(command) exited with status \(status)" + (lines.isEmpty ? "" : ": " + lines)
    }
}

/// The programs block mode runs live in sbin, which a user's PATH may lack.
func findTool(_ name: String) -> String? {
    let path = (getenv("PATH").map { String(cString: $0) } ?? "") + ":/usr/sbin:/sbin:/usr/bin:/bin"
    for dir in path.split(separator: ":") where access("\(dir)/\(name)", X_OK) == 0 {
        return "\(dir)/\(name)"
    }
    return nil
}

/// Runs `argv` to its end, stdout and stderr captured together.
func runTool(_ argv: [String]) -> ToolResult {
    let command = argv.first ?? ""
    guard let executable = findTool(command) else {
        return ToolResult(status: 127, output: "\(command): not found", command: command)
    }
    let result = Subprocess.run([executable] + argv.dropFirst())
    return ToolResult(status: result.status, output: result.output, command: command)
}

private func makeDirectories(_ paths: [String]) throws(CLIError) {
    for path in paths where mkdir(path, 0o755) != 0 && errno != EEXIST {
        throw CLIError("mkdir \(path): \(Errno.current.description)")
    }
}

private func createSparseFile(_ path: String, size: Int64) throws(CLIError) {
    let fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0o600)
    guard fd >= 0 else { throw CLIError("\(path): \(Errno.current.description)") }
    defer { close(fd) }
    guard ftruncate(fd, off_t(size)) == 0 else { throw CLIError("truncate \(path) to \(size) bytes: \(Errno.current.description)") }
}

func writeWholeFile(_ path: String, _ text: String) throws(CLIError) {
    do { try File.write(path, text, create: true) } catch { throw CLIError("write \(path): \(error.description)") }
}
