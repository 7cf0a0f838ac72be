// `faultfs run --fs ext4|xfs|btrfs`: the run's directory is a real file
// system whose disk faultfs serves (block mode). Everything goes through our
// own CLI, so block mode's lifecycle and rule rewriting are the ones
// `faultfs mount --fs`, `faultfs ctl` and `faultfs umount` use: the mount
// undoes itself when a step fails, plan lines get their `sectors=`,
// `region=`, `file=` resolved by `faultfs ctl`, and `faultfs umount` takes
// down the file system, the loop device and the faultfs mount.
import Glibc
import MonitorCore

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

    /// The loop device mounted at `dir` ("/dev/loop3"), from /proc/self/mounts.
    static func loopDevice(at dir: String) -> String? {
        var found: String?
        for line in (Sys.read("/proc/self/mounts") ?? "").split(separator: "\n") {
            let fields = line.split(separator: " ")
            if fields.count > 2, Sys.unescapeMount(fields[1]) == dir, fields[0].hasPrefix("/dev/loop") {
                found = String(fields[0])  // the last one is the top mount
            }
        }
        return found
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
            Sys.sleepNs(100_000_000)
        }
        return "faultfs umount \(dir) failed: " + last.split(separator: "\n").joined(separator: " / ")
    }

    /// Runs `argv` to its end; stdout and stderr together.
    static func runCapturing(_ argv: [String]) -> (code: Int32, output: String) {
        var ends: [Int32] = [0, 0]
        guard pipe(&ends) == 0 else { return (127, "pipe: \(Sys.errorText())") }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addclose(&actions, ends[0])
        posix_spawn_file_actions_adddup2(&actions, ends[1], STDOUT_FILENO)
        posix_spawn_file_actions_adddup2(&actions, ends[1], STDERR_FILENO)
        posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0)
        let cargv = argv.map { strdup($0) } + [nil]
        defer { cargv.forEach { free($0) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, argv[0], &actions, nil, cargv, environ)
        close(ends[1])
        defer { close(ends[0]) }
        guard rc == 0 else { return (127, "cannot start \(argv[0]): \(Sys.errorText(rc))") }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = read(ends[0], &chunk, chunk.count)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            bytes += chunk[0..<n]
        }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let code = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        return (code, String(decoding: bytes, as: UTF8.self))
    }

    /// The sentence about the inner file system for a run folder, if the
    /// run was a block-mode one.
    static func verdict(run: RunData, runDir: String) -> String? {
        guard let fs = run.setting(fileSystemSetting), let device = run.setting(deviceSetting) else { return nil }
        let messages = KernelMessage.parseAll(Sys.read(runDir + "/" + KernelMessage.fileName, limit: 1 << 28) ?? "")
        let name = device.hasPrefix("/dev/") ? String(device.dropFirst(5)) : device
        return KernelVerdict.sentence(fileSystem: fs, device: name, messages: messages, injections: run.injections)
    }
}
