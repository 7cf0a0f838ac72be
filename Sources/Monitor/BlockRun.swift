// `faultfs run --fs ext4|xfs|btrfs`: the run's directory is a real file
// system whose disk faultfs serves (block mode). Everything goes through our
// own CLI, so block mode's lifecycle and rule rewriting are the ones
// `faultfs mount --fs`, `faultfs ctl` and `faultfs umount` use: the mount
// undoes itself when a step fails, plan lines get their `sectors=`,
// `region=`, `file=` resolved by `faultfs ctl`, and `faultfs umount` takes
// down the file system, the loop device and the faultfs mount.
import Glibc
import MonitorCore
import System

public struct BlockRunOptions: Sendable {
    /// "ext4", "xfs", "btrfs".
    public var fileSystem: String
    /// The image's size ("1G"); nil: the mount's default.
    public var size: String?
    public init(fileSystem: String, size: String? = nil) { self.fileSystem = fileSystem; self.size = size }
}

enum BlockRun {
    /// Well-known settings: the report's sentence about the inner file system reads them.
    static let fileSystemSetting = "block.fs"
    static let deviceSetting = "block.device"

    static func mountArguments(_ exe: String, _ block: BlockRunOptions, dir: String, injections: String,
                               fsOptions: [String]) -> [String] {
        var argv = [exe, "mount", "--fs", block.fileSystem]
        if let size = block.size { argv += ["--size", size] }
        if !fsOptions.isEmpty { argv += ["-o", fsOptions.joined(separator: ",")] }
        return argv + ["--daemon-options", "events=" + injections, dir]
    }

    /// The loop device mounted at `dir` ("/dev/loop3"), from the mount table.
    static func loopDevice(at dir: String) -> String? {
        MountTable.topMount(at: dir).map(\.source).flatMap { $0.hasPrefix("/dev/loop") ? $0 : nil }
    }

    /// Writes one control line through `faultfs ctl DIR LINE`; nil when
    /// accepted, else "refused: <why>".
    static func control(_ exe: String, dir: String, line: String) -> String? {
        let result = runCapturing([exe, "ctl", dir, line])
        if result.code == 0 { return nil }
        var why = result.output.split(separator: "\n").last.map(String.init) ?? "faultfs ctl exited \(result.code)"
        for prefix in ["faultfs: ", "refused: "] where why.hasPrefix(prefix) { why.removeFirst(prefix.count) }
        return "refused: " + why
    }

    /// `faultfs umount DIR`, retried while the file system is busy; nil when done.
    static func unmount(_ exe: String, dir: String) -> String? {
        var last = ""
        for _ in 0..<50 {
            let result = runCapturing([exe, "umount", dir])
            if result.code == 0 { return nil }
            last = result.output
            SystemClock.sleep(nanoseconds: 100_000_000)
        }
        return "faultfs umount \(dir) failed: " + last.split(separator: "\n").joined(separator: " / ")
    }

    /// Runs `argv` to its end; stdout and stderr together.
    static func runCapturing(_ argv: [String]) -> (code: Int32, output: String) {
        let result = Subprocess.run(argv)
        return (result.status, result.output)
    }

    /// The sentence about the inner file system for a run folder, if the
    /// run was a block-mode one.
    static func verdict(run: RunData, runDir: String) -> String? {
        guard let fs = run.setting(fileSystemSetting), let device = run.setting(deviceSetting) else { return nil }
        let messages = KernelMessage.parseAll(File.readText(runDir + "/" + KernelMessage.fileName, limit: 1 << 28) ?? "")
        let name = device.hasPrefix("/dev/") ? String(device.dropFirst(5)) : device
        return KernelVerdict.sentence(fileSystem: fs, device: name, messages: messages, injections: run.injections)
    }
}
