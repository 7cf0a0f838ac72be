// `faultfs crash PATH`: a simulated power loss (CRASH.md). FUSE mode: the
// `crash` control line makes the daemon abort its connection, undo in the
// backing tree what was not durable, and mount again at the same path; we
// wait for that (the status file's "crashes" grows). Block mode: the image's
// faultfs mount crashes, and the inner file system is mounted again over a
// new loop device (its journal replays).
import ArgumentParser
import FaultRules
import Glibc
import System

struct CrashCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "crash",
        abstract: "Simulate a power loss: undo what was not durable, and bring the mount back at once.",
        discussion: """
            PATH is a faultfs mount made with -o crashsim, or a block-mode target
            (faultfs mount --fs ext4 -o crashsim TARGET). What was made durable
            survives: data after fsync, fdatasync or an O_SYNC write; a name once
            its directory was fsync'd (crashsim=journal: after any fsync, or 5 s).
            Everything else is undone, the kernel's dirty pages of the mount are
            discarded, and the mount comes back at once at the same path, served
            by the same daemon. Processes still holding files of the old mount
            get errors (ENOTCONN; block mode: EIO), never stale data; --kill
            SIGKILLs them first.
              faultfs crash /srv/db
              faultfs crash /srv/db --kill --torn --seed 7
            Prints one line of what was undone (--json: the report).
            """)

    @Argument(help: "The faultfs mount (or block-mode target) to crash.") var path: String
    @Flag(help: "SIGKILL every process using the mount (open file, cwd, root, mapping) first, and wait for them (10 s at most).")
    var kill = false
    @Flag(help: "Writes not yet durable survive in part: each sector independently, chosen by --seed.") var torn = false
    @Option(help: "Seed of the torn selection (same seed, same history: same result).") var seed: UInt64?
    @Option(help: "Sector size of --torn: 512 or 4096 (default 4096).") var sector: Int?
    @Flag(help: "Print the crash report as JSON.") var json = false
    @Option(help: "The control directory's name (-o control=NAME at mount).") var control = ".faultfs"

    func validate() throws {
        if let sector, sector != 512 && sector != 4096 { throw ValidationError("--sector \(sector): must be 512 or 4096") }
        if sector != nil && !torn { throw ValidationError("--sector needs --torn") }
    }

    /// The control line for this crash.
    var controlLine: String {
        CrashRequest(torn: torn, seed: seed ?? 0, sectorSize: sector ?? 4096).commandText
    }

    func run() throws {
        try reportingFailures {
            let target = UnmountCommand.resolve(path)
            if BlockMode.hasState(target: target) {
                try BlockCrash.crash(target: target, line: controlLine, kill: kill, json: json)
                return
            }
            let report = try FuseCrash.crash(mountPoint: target, controlDirectory: control, line: controlLine,
                                             kill: kill, shownPath: path)
            print(json ? report.json : "faultfs: crashed \(target): \(report.summary)")
        }
    }
}

/// What `faultfs crash` learned from the status file after the crash.
struct CrashOutcome {
    /// The status file's `last_crash` object, as JSON text.
    var json: String
    var summary: String
}

enum FuseCrash {
    /// Crashes the faultfs mount at `mountPoint` and waits until it answers
    /// again. Throws with a message the user can act on.
    /// `remount`: how to mount it again with crash simulation (for the refusal).
    static func crash(mountPoint: String, controlDirectory: String, line: String, kill: Bool,
                      shownPath: String, remount: String? = nil) throws(CLIError) -> CrashOutcome {
        guard let mount = MountTable.topMount(at: mountPoint), mount.isFaultFS else {
            throw CLIError("\(shownPath) is not a faultfs mount")
        }
        let statusPath = MountStatus.path(mountPoint: mountPoint, controlDirectory: controlDirectory)
        guard let before = readStatus(statusPath) else {
            throw CLIError("\(shownPath) is not a faultfs mount (no \(statusPath))")
        }
        switch before["crashsim"]?.string ?? "off" {
        case "off":
            throw CLIError("crash: this mount has no crash simulation; mount it with -o crashsim (remount with -o crashsim: "
                           + (remount ?? "faultfs umount \(mountPoint) && faultfs mount -o crashsim SOURCE \(mountPoint)") + ")")
        case "stopped":
            throw CLIError("crash: the crash simulation of \(mountPoint) has stopped (see the daemon's log and the events file); remount with -o crashsim")
        default: break
        }
        let crashesBefore = before["crashes"]?.int64 ?? 0
        let pid = before["pid"]?.integer(as: pid_t.self) ?? 0
        if kill, let use = MountUse(mountID: mount.mountID, device: mount.device, mountPoint: mountPoint) {
            try killUsers(use)
        }
        try send(line, to: mountPoint + "/" + controlDirectory + "/control")
        // The daemon aborts the connection, undoes and mounts again: until
        // then the path shows the directory underneath (or ENOTCONN).
        let deadline = SystemClock.monotonicNanoseconds() + 60_000_000_000
        while SystemClock.monotonicNanoseconds() < deadline {
            if let status = readStatus(statusPath), status["pid"]?.integer(as: pid_t.self) == pid,
               (status["crashes"]?.int64 ?? 0) > crashesBefore {
                let report = status["last_crash"] ?? .object([])
                let summary = (try? CrashReport.decode(report.jsonText))?.summary ?? "(the status file's report is unreadable: \(report.jsonText))"
                return CrashOutcome(json: report.jsonText, summary: summary)
            }
            if pid > 0 && Glibc.kill(pid, 0) != 0 && errno == ESRCH {
                throw CLIError("crash: the daemon (pid \(pid)) exited during the crash; \(mountPoint) is not mounted (see its log)")
            }
            usleep(50_000)
        }
        throw CLIError("crash: \(mountPoint) did not come back within 60 s (the daemon, pid \(pid), still runs: see its log)")
    }

    /// The status file as JSON, nil when it cannot be read (not mounted, or
    /// the mount is between two sessions).
    static func readStatus(_ path: String) -> JSONValue? {
        guard let text = File.readText(path) else { return nil }
        return try? parseJSON(text)
    }

    /// Writes the crash line to the control file; says why it was refused.
    static func send(_ line: String, to controlPath: String) throws(CLIError) {
        let fd = open(controlPath, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { throw CLIError("\(controlPath): \(Errno.current.description)") }
        let text = line + "\n"
        let written = text.utf8CString.withUnsafeBytes { write(fd, $0.baseAddress, $0.count - 1) }
        let failure = errno
        close(fd)
        guard written < 0 else { return }
        switch failure {
        case EBUSY:
            throw CLIError("crash: a crash is already in progress")
        case ENOTCONN, ECONNABORTED:
            return  // accepted: the connection died as the answer left
        case EINVAL:
            let rules = File.readText(controlPath) ?? ""
            let reason = rules.split(separator: "\n").last { $0.hasPrefix("# error: ") }
            throw CLIError("crash: refused: " + (reason.map { String($0.dropFirst("# error: ".count)) } ?? "invalid command"))
        default:
            throw CLIError("\(controlPath): \(Errno(failure).description)")
        }
    }

    /// SIGKILLs every process (but us) using the mount, and waits (10 s at
    /// most) until they are gone.
    static func killUsers(_ mount: MountUse) throws(CLIError) {
        var users = MountUsers.find(mount)
        for pid in users { Glibc.kill(pid, SIGKILL) }
        let deadline = SystemClock.monotonicNanoseconds() + 10_000_000_000
        while !users.isEmpty && SystemClock.monotonicNanoseconds() < deadline {
            usleep(20_000)
            users = users.filter { Glibc.kill($0, 0) == 0 && ProcFS.status(pid: $0)?["State"]?.first != "Z" }
        }
        if !users.isEmpty {
            throw CLIError("crash: --kill: process \(users.map(String.init).joined(separator: " ")) still runs 10 s after SIGKILL (stuck in the kernel?); not crashing")
        }
    }
}

extension JSONValue {
    /// Compact JSON text.
    var jsonText: String {
        switch self {
        case .null: "null"
        case .bool(let b): b ? "true" : "false"
        case .number(let n): n
        case .string(let s): jsonString(s)
        case .array(let a): "[" + a.map(\.jsonText).joined(separator: ",") + "]"
        case .object(let members): "{" + members.map { jsonString($0.key) + ":" + $0.value.jsonText }.joined(separator: ",") + "}"
        }
    }
}
