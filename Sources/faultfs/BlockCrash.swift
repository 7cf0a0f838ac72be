// `faultfs crash TARGET` in block mode: the disk loses power. The image's
// faultfs mount crashes (the old loop device's I/O then fails, so the old
// inner file system can flush nothing more), TARGET is detached, exactly the
// old loop device is detached, a new one is attached over the image, and
// the inner file system is mounted again (its journal replays).
import FaultRules
import Glibc
import System

enum BlockCrash {
    static func crash(target: String, line: String, kill: Bool, json: Bool) throws(CLIError) {
        let state = BlockState(target: target)
        var facts = state.facts
        guard let oldLoop = facts["loop"], let fs = facts["fs"],
              let top = MountTable.topMount(at: target), top.source == oldLoop else {
            throw CLIError("\(target): the block-mode file system is not mounted (run faultfs umount \(target), then mount again)")
        }
        if kill, let use = MountUse(mountID: top.mountID, device: top.device, mountPoint: target) {
            try FuseCrash.killUsers(use)
        }
        // The disk: undone below the old file system, which can write no more.
        let outcome = try FuseCrash.crash(mountPoint: state.mountpoint, controlDirectory: ".faultfs", line: line,
                                          kill: false, shownPath: target,
                                          remount: "faultfs umount \(target) && faultfs mount --fs \(fs) -o crashsim ... \(target)")
        // Its disk is dead; stop the old file system too (FS_IOC_SHUTDOWN,
        // no log flush: ext4, XFS, recent Btrfs), so that a process still
        // holding its files gets EIO instead of its cached pages. A file
        // system without the ioctl keeps serving its cache to those.
        let shutdown = shutDownWithoutFlush(target)
        if let shutdown { printError("faultfs: crash: \(target): \(shutdown); processes still holding its files may read its cached pages (use --kill)") }
        // The old file system and its loop device are dead: let them go.
        if umount2(target, Int32(MNT_DETACH)) != 0 {
            throw CLIError("crash: cannot detach \(target): \(Errno.current.description); the image was crashed, \(target) still shows the old file system")
        }
        let detached = runTool(["losetup", "-d", oldLoop])
        if detached.status != 0 { printError("faultfs: crash: losetup -d \(oldLoop): \(detached.failure) (it goes once no longer used)") }
        let attached = runTool(["losetup", "--find", "--show", "--direct-io=on",
                                "--sector-size", facts["sector_size"] ?? String(BlockMode.sectorSize), state.imageThroughMount])
        guard attached.status == 0, attached.output.hasPrefix("/dev/loop") else {
            throw CLIError("crash: attaching a loop device over \(state.imageThroughMount) failed: \(attached.failure); run faultfs umount \(target)")
        }
        let loop = String(attached.output.split(separator: "\n")[0])
        facts["loop"] = loop
        facts["direct_io"] = File.readText("/sys/block/\(loop.dropFirst(5))/loop/dio")?.first == "1" ? "on" : "off"
        state.facts = facts
        var arguments = ["mount", "-t", fs]
        if let options = facts["fs_options"], !options.isEmpty { arguments += ["-o", options] }
        // XFS and Btrfs refuse a second file system with the same UUID while
        // the old one is still being torn down: retry for a few seconds.
        var mounted = runTool(arguments + [loop, target])
        for _ in 0..<50 where mounted.status != 0 {
            usleep(100_000)
            mounted = runTool(arguments + [loop, target])
        }
        guard mounted.status == 0 else {
            throw CLIError("crash: mounting \(fs) from \(loop) at \(target) again failed: \(mounted.failure); run faultfs umount \(target)")
        }
        print(json ? outcome.json : "faultfs: crashed \(target) (\(fs) mounted again from \(loop)); its disk image: \(outcome.summary)")
    }

    /// FS_IOC_SHUTDOWN with FS_SHUTDOWN_FLAGS_NOLOGFLUSH on the file system
    /// at `path`; what went wrong, or nil.
    private static func shutDownWithoutFlush(_ path: String) -> String? {
        let fsIocShutdown: UInt = 0x8004_587D  // _IOR('X', 125, __u32)
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { return "cannot open it to shut it down: \(Errno.current.description)" }
        defer { close(fd) }
        var flags: UInt32 = 2  // FS_SHUTDOWN_FLAGS_NOLOGFLUSH
        guard ioctl(fd, fsIocShutdown, &flags) == 0 else { return "cannot shut it down (FS_IOC_SHUTDOWN): \(Errno.current.description)" }
        return nil
    }
}
