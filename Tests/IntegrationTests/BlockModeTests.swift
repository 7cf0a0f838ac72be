// Block mode for real: ext4, ext4 data=journal, XFS and Btrfs on a loop
// device over an image on a faultfs mount. What each file system does after
// an injected error is asserted as observed on this kernel (Linux 6.18;
// docs/kernel-behaviour.md, "Block mode"). Every test checks that nothing
// is left behind: no loop device over a block-mode image, no mount at the
// target or in the state directory, no state directory.
import Foundation
import Glibc
import System
import Testing

/// One file system under test, as `faultfs mount --fs` takes it.
struct BlockFileSystemCase: CustomTestStringConvertible, Sendable {
    var fs: String
    var options: String?
    var size = "400M"  // XFS needs 300 MiB; the same size for all
    var testDescription: String { options.map { "\(fs) -o \($0)" } ?? fs }
    /// FIEMAP gives places on the disk (not on Btrfs: logical addresses).
    var hasFileKey: Bool { fs != "btrfs" }

    static let ext4 = Self(fs: "ext4")
    static let ext4Journal = Self(fs: "ext4", options: "data=journal")
    static let xfs = Self(fs: "xfs")
    static let btrfs = Self(fs: "btrfs")
    static let all = [ext4, ext4Journal, xfs, btrfs]
}

private func faultfs(_ arguments: [String]) throws -> CommandResult {
    try runCommand(try FaultFSBinary.path(), arguments, limitSeconds: 120)
}

/// mkfs for each file system, installed once if missing.
private func requireBlockTools() throws {
    try MountedFS.requirePrerequisites()
    let tools = ["mkfs.ext4": "e2fsprogs", "mkfs.xfs": "xfsprogs", "mkfs.btrfs": "btrfs-progs"]
    let missing = tools.filter { access("/usr/sbin/" + $0.key, X_OK) != 0 && access("/sbin/" + $0.key, X_OK) != 0 }.map(\.value)
    guard !missing.isEmpty else { return }
    let result = try runCommand("apt-get", ["-o", "DPkg::Lock::Timeout=300", "install", "-y", "-qq"] + missing.sorted())
    guard result.status == 0 else { throw SetupError("apt-get install \(missing): \(result)") }
}

/// The state directory `faultfs mount --fs` uses for `target` (see BlockState).
private func stateDirectory(_ target: String) -> String {
    var name = ""
    for byte in target.utf8.dropFirst() {
        switch byte {
        case UInt8(ascii: "/"): name += "-"
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
             UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "."), UInt8(ascii: "_"):
            name.unicodeScalars.append(Unicode.Scalar(byte))
        default: name += String(format: "%%%02X", byte)
        }
    }
    return "/var/lib/faultfs/block/" + name
}

/// What of a block mount is still there: loop devices over its image,
/// mounts at the target or in the state directory, the state directory.
private func leftovers(_ target: String) -> [String] {
    let state = stateDirectory(target)
    var found: [String] = []
    if let loops = try? runCommand("losetup", ["-a"]) {
        found += loops.stdout.split(separator: "\n").filter { $0.contains(state + "/") }.map { "loop: \($0)" }
    }
    found += MountTable.entries().filter { $0.mountPoint == target || $0.mountPoint.hasPrefix(state + "/") }
        .map { "mount: \($0.mountPoint) (\($0.type))" }
    if access(state, F_OK) == 0 { found.append("state directory \(state)") }
    return found
}

/// Forced cleanup after a test whose own unmount failed, so that nothing leaks.
private func forceCleanUp(_ target: String) {
    let state = stateDirectory(target)
    umount2(target, Int32(MNT_DETACH))
    if let loops = try? runCommand("losetup", ["-a"]) {
        for line in loops.stdout.split(separator: "\n") where line.contains(state + "/") {
            _ = try? runCommand("losetup", ["-d", String(line.prefix { $0 != ":" })])
        }
    }
    umount2(state + "/mnt", Int32(MNT_DETACH))
    _ = try? runCommand("rm", ["-rf", "--one-file-system", state])
}

/// Mounts `fsCase` at a fresh directory, runs `body`, unmounts with
/// `faultfs umount` and checks that nothing is left.
private func withBlockMount(_ fsCase: BlockFileSystemCase, _ body: (String) throws -> Void) throws {
    try requireBlockTools()
    try withTemporaryDirectory("block") { target in
        var arguments = ["mount", "--fs", fsCase.fs, "--size", fsCase.size]
        if let options = fsCase.options { arguments += ["-o", options] }
        let mounted = try faultfs(arguments + [target])
        try #require(mounted.status == 0, "\(mounted)")
        var unmounted = false
        defer {
            if !unmounted { forceCleanUp(target) }
        }
        do {
            try body(target)
        } catch {
            let result = try? faultfs(["umount", target])
            unmounted = result?.status == 0
            throw error
        }
        let result = try faultfs(["umount", target])
        #expect(result.status == 0, "\(result)")
        unmounted = result.status == 0
        #expect(leftovers(target).isEmpty, "\(leftovers(target))")
    }
}

private func control(_ target: String, _ lines: String...) throws {
    let result = try faultfs(["ctl", target] + lines)
    try #require(result.status == 0, "\(lines): \(result)")
}

/// write + fsync of `size` bytes of `byte` at offset 0; the fsync's outcome.
private func writeAndSync(_ path: String, byte: UInt8, size: Int = 262_144) -> Outcome {
    let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
    guard fd >= 0 else { return Outcome(value: -1, errno: errno) }
    defer { close(fd) }
    let written = pwriteBytes(fd, [UInt8](repeating: byte, count: size), at: 0)
    guard written.errno == 0 else { return written }
    return sys { fsync(fd) }
}

/// Reads the whole file after dropping the page cache (so the disk is asked).
private func readAfterDroppingCaches(_ path: String) -> Outcome {
    sync()
    let drop = open("/proc/sys/vm/drop_caches", O_WRONLY)
    if drop >= 0 {
        _ = write(drop, "3", 1)
        close(drop)
    }
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return Outcome(value: -1, errno: errno) }
    defer { close(fd) }
    var buffer = [UInt8](repeating: 0, count: 65536)
    var total = 0
    while true {
        let n = read(fd, &buffer, buffer.count)
        if n < 0 { return Outcome(value: -1, errno: errno) }
        if n == 0 { return Outcome(value: total, errno: 0) }
        total += n
    }
}

/// The `ranges=` of rule `id` as `faultfs ctl TARGET` shows it now.
private func rangesOfRule(_ id: String, _ target: String) -> String? {
    guard let shown = try? faultfs(["ctl", target]), shown.status == 0 else { return nil }
    let line = shown.stdout.split(separator: "\n").first { $0.split(separator: " ").contains("id=\(id)") }
    return line?.split(separator: " ").first { $0.hasPrefix("ranges=") }.map { String($0.dropFirst("ranges=".count)) }
}

private func directoryIsEmpty(_ path: String) -> Bool {
    ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).isEmpty
}

private func isReadOnly(_ target: String) -> Bool {
    var info = statvfs()
    return statvfs(target, &info) == 0 && info.f_flag & UInt(ST_RDONLY) != 0
}

/// The line that selects the test file's data blocks (Btrfs: the whole disk).
private func dataRule(_ fsCase: BlockFileSystemCase, _ action: String) -> String {
    fsCase.hasFileKey ? "\(action) file=data" : action
}

/// What fsync returned when the journal (or the flush that ends a commit)
/// failed: EIO, except ext4 data=journal, which finds its journal already
/// aborted and says EROFS.
private func fsyncErrnoAfterJournalFailure(_ fsCase: BlockFileSystemCase) -> Int32 {
    fsCase.options == "data=journal" ? EROFS : EIO
}

/// After a failed journal commit: XFS is shut down (every call EIO); ext4
/// and Btrfs refuse changes with EROFS. Btrfs is remounted read-only; ext4
/// logs "Remounting filesystem read-only" but, since Linux 6.9, only marks
/// itself read-only inside (EXT4_FLAGS_EMERGENCY_RO): the mount table and
/// statvfs still say rw.
private func expectBrokenAfterJournalFailure(_ fsCase: BlockFileSystemCase, _ target: String,
                                             sourceLocation: SourceLocation = #_sourceLocation) {
    let created = writeAndSync(target + "/after", byte: 0x63, size: 4096)
    switch fsCase.fs {
    case "xfs":
        #expect(created == returnedErrno(EIO), "XFS shut down", sourceLocation: sourceLocation)
    case "btrfs":
        #expect(created == returnedErrno(EROFS), sourceLocation: sourceLocation)
        #expect(isReadOnly(target), sourceLocation: sourceLocation)
    default:
        #expect(created == returnedErrno(EROFS), sourceLocation: sourceLocation)
        #expect(!isReadOnly(target), "ext4 now shows ro in the mount table", sourceLocation: sourceLocation)
    }
}

extension AllMountTests {
    @Suite(.timeLimit(.minutes(10)))
    struct BlockModeTests {
        @Test("a failed data write reaches fsync as EIO; then the file system goes on (ext4, XFS) or goes read-only (Btrfs)",
              arguments: BlockFileSystemCase.all)
        func dataWriteError(_ fsCase: BlockFileSystemCase) throws {
            try withBlockMount(fsCase) { target in
                let file = target + "/data"
                try #require(writeAndSync(file, byte: 0x61) == .success)
                try control(target, dataRule(fsCase, "fail write EIO"))
                #expect(writeAndSync(file, byte: 0x62) == returnedErrno(EIO))
                if fsCase.fs == "btrfs" {
                    // The rule fails every write: the next transaction commit
                    // fails, the transaction is aborted, "forced readonly".
                    let synced = try runCommand("sync", ["-f", target])
                    #expect(synced.status != 0, "\(synced)")
                    try control(target, "clear")
                    #expect(isReadOnly(target))
                    #expect(writeAndSync(target + "/after", byte: 0x63, size: 4096).errno != 0)
                } else {
                    try control(target, "clear")
                    // A data block error only: no journal abort, no shutdown.
                    #expect(!isReadOnly(target))
                    #expect(writeAndSync(target + "/after", byte: 0x63, size: 4096) == .success)
                    #expect(writeAndSync(file, byte: 0x64) == .success)
                }
            }
        }

        @Test("a failed journal write: ext4 aborts its journal and refuses changes with EROFS, XFS shuts down",
              arguments: [BlockFileSystemCase.ext4, .ext4Journal, .xfs])
        func journalWriteError(_ fsCase: BlockFileSystemCase) throws {
            try withBlockMount(fsCase) { target in
                let file = target + "/data"
                try #require(writeAndSync(file, byte: 0x61) == .success)
                try control(target, "fail write EIO region=journal")
                #expect(writeAndSync(file, byte: 0x62) == returnedErrno(fsyncErrnoAfterJournalFailure(fsCase)))
                try control(target, "clear")
                expectBrokenAfterJournalFailure(fsCase, target)
            }
        }

        @Test("a failed cache flush fails fsync; ext4 and Btrfs then refuse changes with EROFS, XFS shuts down",
              arguments: BlockFileSystemCase.all)
        func flushError(_ fsCase: BlockFileSystemCase) throws {
            try withBlockMount(fsCase) { target in
                let file = target + "/data"
                try #require(writeAndSync(file, byte: 0x61) == .success)
                try control(target, "fail flush EIO")
                #expect(writeAndSync(file, byte: 0x62) == returnedErrno(fsyncErrnoAfterJournalFailure(fsCase)))
                try control(target, "clear")
                expectBrokenAfterJournalFailure(fsCase, target)
            }
        }

        @Test("fail read under a file: EIO once the page cache is dropped; the data is back after clear",
              arguments: BlockFileSystemCase.all)
        func readError(_ fsCase: BlockFileSystemCase) throws {
            try withBlockMount(fsCase) { target in
                let file = target + "/data"
                try #require(writeAndSync(file, byte: 0x61) == .success)
                try control(target, dataRule(fsCase, "fail read EIO"))
                #expect(readAfterDroppingCaches(file) == returnedErrno(EIO))
                try control(target, "clear")
                #expect(readAfterDroppingCaches(file) == Outcome(value: 262_144, errno: 0))
                #expect(!isReadOnly(target))
            }
        }

        @Test("file= catches data written before the rule and allocated after it (delayed allocation); mtime stays",
              arguments: BlockFileSystemCase.all.filter(\.hasFileKey))
        func fileKeyCatchesDelayedAllocation(_ fsCase: BlockFileSystemCase) throws {
            try withBlockMount(fsCase) { target in
                let file = target + "/late"
                let fd = open(file, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
                try #require(fd >= 0)
                defer { close(fd) }
                try #require(pwriteBytes(fd, [UInt8](repeating: 0x61, count: 262_144), at: 0).errno == 0)
                var before = stat()
                fstat(fd, &before)
                try control(target, "fail write EIO file=late")
                var after = stat()
                fstat(fd, &after)
                #expect(after.st_mtim.tv_sec == before.st_mtim.tv_sec && after.st_mtim.tv_nsec == before.st_mtim.tv_nsec)
                #expect(after.st_size == before.st_size)
                #expect(sys { fsync(fd) } == returnedErrno(EIO))
            }
        }

        @Test("file= keeps up after arming: a new matching file and an append are caught, a file not matching is not",
              arguments: [BlockFileSystemCase.ext4, .xfs])
        func fileKeyCatchesDataWrittenAfterArming(_ fsCase: BlockFileSystemCase) throws {
            try withBlockMount(fsCase) { target in
                try #require(mkdir(target + "/dir", 0o755) == 0)
                try #require(writeAndSync(target + "/other", byte: 0x61) == .success)
                // Armed while dir/ is empty: it names files to come.
                try control(target, "fail write EIO file=dir/* id=dir")
                #expect(rangesOfRule("dir", target) == "none")

                // A new file: its data is caught once the re-resolver has
                // allocated and covered it (the wait: see "the race", README).
                let new = open(target + "/dir/new", O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
                try #require(new >= 0)
                defer { close(new) }
                try #require(pwriteBytes(new, [UInt8](repeating: 0x62, count: 262_144), at: 0).errno == 0)
                #expect(pollUntil { rangesOfRule("dir", target) != "none" }, "the re-resolver never covered dir/new")
                #expect(sys { fsync(new) } == returnedErrno(EIO))

                // An append to a matching file that existed when the rule was armed.
                try control(target, "clear dir")
                try #require(writeAndSync(target + "/dir/old", byte: 0x63, size: 65536) == .success)
                try control(target, "fail write EIO file=dir/old id=old")
                let covered = rangesOfRule("old", target)
                let old = open(target + "/dir/old", O_RDWR | O_CLOEXEC)
                try #require(old >= 0)
                defer { close(old) }
                try #require(pwriteBytes(old, [UInt8](repeating: 0x64, count: 262_144), at: 65536).errno == 0)
                #expect(pollUntil { rangesOfRule("old", target) != covered }, "the re-resolver never covered the append")
                #expect(sys { fsync(old) } == returnedErrno(EIO))

                // A file the glob does not name passes.
                #expect(writeAndSync(target + "/other", byte: 0x65) == .success)
                try control(target, "clear")
                #expect(pollUntil { directoryIsEmpty(stateDirectory(target) + "/file-rules") }, "records left after clear")
            }
        }

        @Test("faultfs ctl TARGET shows the block-mode facts; keys that cannot be resolved are refused")
        func controlFactsAndRefusals() throws {
            try withBlockMount(.btrfs) { target in
                let facts = try faultfs(["ctl", target])
                #expect(facts.status == 0 && facts.stdout.contains("# block mode: btrfs at \(target) on /dev/loop"), "\(facts)")
                #expect(facts.stdout.contains("sector size 512, direct I/O on"), "\(facts)")
                // The facts come from the image mount's control file itself, which names that mount.
                let control = try String(contentsOfFile: stateDirectory(target) + "/mnt/.faultfs/control", encoding: .utf8)
                #expect(control.hasPrefix("# block mode: btrfs at \(target) on /dev/loop"), "\(control)")
                #expect(control.contains("served by the faultfs mount \(stateDirectory(target))/mnt\n"), "\(control)")
                for (line, reason) in [("fail write EIO region=journal", "no journal at a fixed place"),
                                       ("fail write EIO file=x", "logical addresses"),
                                       ("fail flush EIO sectors=0-7", "no place on the disk"),
                                       ("fail write EIO offset=0-4K", "sectors=")] {
                    let result = try faultfs(["ctl", target, line])
                    #expect(result.status != 0 && result.stderr.contains(reason), "\(line): \(result)")
                }
                let sectors = try faultfs(["ctl", target, "fail write EIO sectors=2048-4095 count=1"])
                #expect(sectors.status == 0, "\(sectors)")
                #expect(try faultfs(["ctl", target]).stdout.contains("path=disk.img ranges=1M-2M count=1"))
            }
            try withBlockMount(.ext4) { target in
                let result = try faultfs(["ctl", target, "fail write EIO file=nothing-here*"])
                #expect(result.status != 0 && result.stderr.contains("names no file"), "\(result)")
                // A file of another mount below the target: its blocks are not on this disk.
                try #require(mkdir(target + "/other", 0o755) == 0)
                try #require(try runCommand("mount", ["-t", "tmpfs", "none", target + "/other"]).status == 0)
                defer { umount2(target + "/other", Int32(MNT_DETACH)) }
                try writeFile(target + "/other/f", "x")
                let other = try faultfs(["ctl", target, "fail write EIO file=other/f"])
                #expect(other.status != 0 && other.stderr.contains("another file system"), "\(other)")
            }
            // An ext4 made without a journal (given with --image): region=journal is refused.
            try withTemporaryDirectory("block-image") { images in
                let image = images + "/nojournal.img"
                try #require(try runCommand("truncate", ["-s", "64M", image]).status == 0)
                try #require(try runCommand("mkfs.ext4", ["-q", "-F", "-O", "^has_journal", image]).status == 0)
                try withTemporaryDirectory("block") { target in
                    defer { if !leftovers(target).isEmpty { forceCleanUp(target) } }
                    try #require(try faultfs(["mount", "--fs", "ext4", "--image", image, target]).status == 0)
                    let result = try faultfs(["ctl", target, "fail write EIO region=journal"])
                    #expect(result.status != 0 && result.stderr.contains("no internal journal"), "\(result)")
                    #expect(try faultfs(["umount", target]).status == 0)
                }
            }
        }

        @Test("kill -9 (or SIGSTOP) of the daemon: faultfs umount still removes the file system, the loop device and the mount",
              arguments: [(BlockFileSystemCase.ext4, SIGKILL), (.xfs, SIGKILL), (.ext4, SIGSTOP)])
        func cleanupAfterKilledDaemon(_ fsCase: BlockFileSystemCase, _ signal: Int32) throws {
            try requireBlockTools()
            try withTemporaryDirectory("block") { target in
                let mounted = try faultfs(["mount", "--fs", fsCase.fs, "--size", fsCase.size, target])
                try #require(mounted.status == 0, "\(mounted)")
                defer { if !leftovers(target).isEmpty { forceCleanUp(target) } }
                try writeFile(target + "/f", "dirty data, never written back")
                let daemons = try runCommand("pgrep", ["-f", "--", "-- .* \(stateDirectory(target))/mnt$"])
                let pids = daemons.stdout.split(separator: "\n").compactMap { pid_t($0) }
                try #require(pids.count == 1, "\(daemons)")
                kill(pids[0], signal)
                // A stop takes effect asynchronously: umount must meet a stopped daemon, not one about to stop.
                for _ in 0..<500 where signal == SIGSTOP && ProcFS.status(pid: pids[0])?["State"]?.first != "T" { usleep(10_000) }
                let result = try faultfs(["umount", target])
                #expect(result.status == 0, "\(result)")
                #expect(leftovers(target).isEmpty, "\(leftovers(target))")
                #expect(pollUntil { kill(pids[0], 0) != 0 }, "the daemon \(pids[0]) still runs")
            }
        }

        @Test("a half-torn-down target (inner file system unmounted by hand; busy) is finished by a second umount")
        func secondUnmountFinishes() throws {
            try requireBlockTools()
            try withTemporaryDirectory("block") { target in
                try #require(try faultfs(["mount", "--fs", "ext4", "--size", "64M", target]).status == 0)
                defer { if !leftovers(target).isEmpty { forceCleanUp(target) } }
                // Busy: an open file keeps the inner file system; nothing is undone.
                let fd = open(target + "/open", O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
                let busy = try faultfs(["umount", target])
                #expect(busy.status != 0 && busy.stderr.contains("busy"), "\(busy)")
                #expect(MountTable.isMountPoint(target))
                close(fd)
                // Half done by hand: only the inner file system is gone.
                #expect(umount2(target, 0) == 0)
                let finished = try faultfs(["umount", target])
                #expect(finished.status == 0, "\(finished)")
                #expect(leftovers(target).isEmpty, "\(leftovers(target))")
            }
        }

        @Test("--image: the image is made, kept at umount and reused by the next mount")
        func keptImage() throws {
            try requireBlockTools()
            try withTemporaryDirectory("block-image") { images in
                try withTemporaryDirectory("block") { target in
                    defer { if !leftovers(target).isEmpty { forceCleanUp(target) } }
                    let image = images + "/db.img"
                    for round in 0..<2 {
                        let mounted = try faultfs(["mount", "--fs", "ext4", "--size", "64M", "--image", image, target])
                        try #require(mounted.status == 0, "\(mounted)")
                        if round == 0 {
                            try writeFile(target + "/kept", "still here")
                        } else {
                            #expect(textOfFile(target + "/kept") == "still here")
                        }
                        let result = try faultfs(["umount", target])
                        #expect(result.status == 0, "\(result)")
                        #expect(leftovers(target).isEmpty, "\(leftovers(target))")
                        #expect(access(image, F_OK) == 0)
                    }
                }
            }
        }

        @Test("bad input: clear message, non-zero exit, nothing left behind")
        func badInput() throws {
            try requireBlockTools()
            try withTemporaryDirectory("block") { target in
                defer { if !leftovers(target).isEmpty { forceCleanUp(target) } }
                let cases: [([String], String)] = [
                    (["--fs", "zfs"], "unknown --fs zfs"),
                    (["--fs", "xfs", "--size", "100M"], "too small for xfs"),
                    (["--fs", "btrfs", "--size", "64M"], "too small for btrfs"),
                    // Fails half-way, at the inner mount: every earlier step is undone.
                    (["--fs", "ext4", "--size", "64M", "-o", "no_such_option"], "step \"mount ext4 on"),
                ]
                for (arguments, message) in cases {
                    let result = try faultfs(["mount"] + arguments + [target])
                    #expect(result.status != 0 && result.stderr.contains(message), "\(arguments): \(result)")
                    #expect(leftovers(target).isEmpty, "\(arguments): \(leftovers(target))")
                }
                let onMount = try runCommand("mount", ["-t", "tmpfs", "none", target])
                try #require(onMount.status == 0, "\(onMount)")
                defer { umount2(target, Int32(MNT_DETACH)) }
                let result = try faultfs(["mount", "--fs", "ext4", target])
                #expect(result.status != 0 && result.stderr.contains("already a mount point"), "\(result)")
                #expect(access(stateDirectory(target), F_OK) != 0)
            }
        }
    }
}
