// The one fixture every test uses: a faultfs mount of a fresh temp dir,
// served by the built `faultfs` executable in the foreground as a child
// process, always unmounted at the end (see `withMount`). Also: running
// commands, reading the mount table, temp dirs.
import Foundation
import Glibc
import Synchronization
import System
import Testing
import TestSupport

/// Every suite of this target is nested in this one, so that no two tests
/// ever run at once (each mounts; the machine has 2 cores).
/// The time limit is a backstop for any test that has none of its own
/// (Swift Testing applies the shortest); blocking calls have tighter deadlines.
@Suite(.serialized, .timeLimit(.minutes(20)))
enum AllMountTests {}

// MARK: the executable

enum FaultFSBinary {
    /// `$FAULTFS_BIN`, else `faultfs` in the products folder beside the test
    /// bundle (SwiftPM builds both there). Throws with a clear message otherwise.
    static func path() throws -> String {
        if let explicit = ProcessInfo.processInfo.environment["FAULTFS_BIN"], !explicit.isEmpty {
            guard access(explicit, X_OK) == 0 else { throw SetupError("FAULTFS_BIN=\(explicit) is not an executable file") }
            return explicit
        }
        let candidates = [CommandLine.arguments[0], Bundle.main.bundlePath, Bundle.main.executablePath ?? ""]
            .filter { !$0.isEmpty }
            .map { URL(fileURLWithPath: $0).deletingLastPathComponent().appendingPathComponent("faultfs").path }
        if let found = candidates.first(where: { access($0, X_OK) == 0 }) { return found }
        throw SetupError("""
            cannot find the faultfs executable: looked at \(candidates.joined(separator: ", ")). \
            Build it (swift build --build-tests) or set FAULTFS_BIN to its path.
            """)
    }
}

// MARK: commands

struct CommandResult: CustomStringConvertible {
    var status: Int32  // exit status; 128+N when killed by signal N
    var stdout: String
    var stderr: String
    var description: String { "exit \(status), stdout: \(stdout.prefix(2000)), stderr: \(stderr.prefix(2000))" }
}

/// Runs `executable` (a path, or a name looked up in PATH) with `arguments`,
/// waits for it and returns its output. A command still running after
/// `limitSeconds` is killed (a guard against a hang, not a timing assertion).
func runCommand(_ executable: String, _ arguments: [String], limitSeconds: Int = 600) throws -> CommandResult {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: try resolveExecutable(executable))
    process.arguments = arguments
    // Files, not pipes: a command printing a lot can never block on us.
    let out = try TemporaryFile(prefix: "out"), err = try TemporaryFile(prefix: "err")
    process.standardOutput = out.handle
    process.standardError = err.handle
    process.standardInput = FileHandle.nullDevice
    try process.run()
    if !waitForExit(process, polls: limitSeconds * 10) {
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }
    let status = process.terminationReason == .uncaughtSignal ? 128 + process.terminationStatus : process.terminationStatus
    return CommandResult(status: status, stdout: out.contents, stderr: err.contents)
}

/// The full path of `name` from PATH (or `name` itself when it has a slash).
func resolveExecutable(_ name: String) throws -> String {
    if name.contains("/") { return name }
    let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
    for directory in path.split(separator: ":") where access("\(directory)/\(name)", X_OK) == 0 {
        return "\(directory)/\(name)"
    }
    throw SetupError("\(name) is not in PATH (\(path)); install it (apt-get install the package that ships \(name))")
}

/// Polls every 100 ms, at most `polls` times; true once the process exited.
private func waitForExit(_ process: Process, polls: Int) -> Bool {
    for _ in 0..<polls {
        if !process.isRunning { process.waitUntilExit(); return true }
        usleep(100_000)
    }
    return !process.isRunning
}

/// A file under `scratchRoot` (TestSupport) that disappears with this object.
final class TemporaryFile {
    let path: String
    let handle: FileHandle
    init(prefix: String) throws {
        let (fd, path) = try makeScratchFile("itest-\(prefix)")
        self.path = path
        handle = FileHandle(fileDescriptor: fd, closeOnDealloc: true)
    }
    var contents: String { (try? String(contentsOfFile: path, encoding: .utf8)) ?? "" }
    deinit { unlink(path) }
}

/// A fresh directory under `scratchRoot` with a random suffix; `remove()` deletes it.
func makeTemporaryDirectory(_ prefix: String) throws -> String { try makeScratchDirectory("itest-\(prefix)") }

/// Removes a tree (never one that is still a mount point).
func removeTree(_ path: String) {
    guard !MountTable.isMountPoint(path) else {
        Issue.record("not removing \(path): it is still mounted")
        return
    }
    try? FileManager.default.removeItem(atPath: path)
}

/// Runs `body` with a fresh plain directory, removed afterwards.
func withTemporaryDirectory<T>(_ prefix: String, _ body: (String) throws -> T) throws -> T {
    let path = try makeTemporaryDirectory(prefix)
    defer { removeTree(path) }
    return try body(path)
}

// MARK: the mount table

/// The project's one mountinfo parser (System), for every file of this target.
typealias MountTable = System.MountTable

extension MountEntry {
    var type: String { fileSystemType }
}

extension System.MountTable {
    /// Every line of /proc/self/mountinfo.
    static func entries() -> [MountEntry] { current() }

    /// True when a faultfs mount is at `path`.
    static func hasFaultFSMount(_ path: String) -> Bool {
        entries().contains { $0.mountPoint == path && $0.type == "fuse.faultfs" }
    }

    static func isMountPoint(_ path: String) -> Bool {
        entries().contains { $0.mountPoint == path }
    }
}

// MARK: the fixture

/// A live faultfs mount of a fresh temp dir. Make one with `withMount`.
final class MountedFS {
    /// The temp dir holding source, mount point and log.
    let base: String
    let source: String
    let mountpoint: String
    /// The daemon's stderr.
    let logPath: String
    private let process: Process
    /// Set once the test unmounted or killed the daemon itself.
    private var ended = false

    /// The daemon's pid (`faultfs mount -f` serves in the process itself).
    var pid: pid_t { process.processIdentifier }
    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }
    var isRunning: Bool { process.isRunning }

    /// `prepare` fills the source directory before the mount (given its path).
    /// `inPlace`: the source is mounted on itself.
    init(options: [String] = [], inPlace: Bool = false, prepare: (String) throws -> Void = { _ in }) throws {
        try Self.requirePrerequisites()
        let binary = try FaultFSBinary.path()

        base = try makeTemporaryDirectory("mount")
        chmod(base, 0o755)  // other users reach the mount (OwnershipTests)
        source = base + "/source"
        mountpoint = inPlace ? source : base + "/mnt"
        logPath = base + "/faultfs.log"
        process = Process()
        do {
            try check("mkdir \(source)", sys { mkdir(source, 0o755) })
            if !inPlace { try check("mkdir \(mountpoint)", sys { mkdir(mountpoint, 0o755) }) }
            try prepare(source)
        } catch {
            removeTree(base)
            throw error
        }

        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = ["mount", "-f"] + (options.isEmpty ? [] : ["-o", options.joined(separator: ",")]) + [source, mountpoint]
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        let logHandle = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        process.standardOutput = logHandle
        process.standardError = logHandle
        process.standardInput = FileHandle.nullDevice
        try process.run()
        try logHandle.close()

        // Live once mountinfo lists it (at most 10 s).
        for _ in 0..<100 where !MountTable.hasFaultFSMount(mountpoint) && process.isRunning {
            usleep(100_000)
        }
        guard MountTable.hasFaultFSMount(mountpoint) else {
            let running = process.isRunning
            tearDown()
            throw SetupError("""
                faultfs did not mount \(mountpoint) (\(running ? "still running after 10 s" : "exited with \(process.terminationStatus)")); \
                command: \(binary) \(process.arguments!.joined(separator: " ")); log: \(log)
                """)
        }
    }

    /// Without /dev/fuse or root the tests fail (they do not skip).
    static func requirePrerequisites() throws {
        let fuse = access("/dev/fuse", R_OK | W_OK) == 0 ? 0 : errno
        try #require(fuse == 0, "these tests need /dev/fuse (read and write): \(errnoText(fuse))")
        try #require(getuid() == 0, "these tests need root (mounting, other users' files); uid is \(getuid())")
    }

    /// A path inside the mount / inside the backing directory.
    func path(_ relative: String) -> String { mountpoint + "/" + relative }
    func backing(_ relative: String) -> String { source + "/" + relative }

    /// Unmounts (faultfs umount, then fusermount3 -u -z), waits for the
    /// daemon to exit (killing it after 10 s). Safe to call twice; returns
    /// what went wrong, if anything.
    @discardableResult
    func unmount() -> [String] {
        var problems: [String] = []
        // A daemon that exited 0 was unmounted by the test itself; anything else died.
        if !ended && !process.isRunning && (process.terminationReason == .uncaughtSignal || process.terminationStatus != 0) {
            problems.append("the daemon died during the test (\(process.terminationReason == .uncaughtSignal ? "signal" : "exit status") \(process.terminationStatus))")
        }
        let endedBefore = ended && !process.isRunning
        ended = true
        if MountTable.hasFaultFSMount(mountpoint) {
            let result = try? runCommand(process.executableURL!.path, ["umount", mountpoint], limitSeconds: 60)
            if result?.status != 0 { problems.append("faultfs umount \(mountpoint): \(result.map(String.init(describing:)) ?? "could not run")") }
        }
        if MountTable.hasFaultFSMount(mountpoint) {
            _ = try? runCommand("fusermount3", ["-u", "-z", mountpoint], limitSeconds: 60)
        }
        if !waitForExit(process, polls: 100) {
            problems.append("faultfs (pid \(pid)) still running 10 s after the unmount: killed")
            killDaemon()
        } else if process.terminationStatus != 0 && !endedBefore {
            problems.append("faultfs exited with status \(process.terminationStatus) after the unmount")
        }
        if MountTable.hasFaultFSMount(mountpoint) { problems.append("\(mountpoint) is still mounted") }
        return problems
    }

    /// Kills the daemon with SIGKILL and waits for it (the mount stays, dead).
    func killDaemon() {
        ended = true
        kill(pid, SIGKILL)
        process.waitUntilExit()
    }

    /// Unmounts if still mounted, records any problem, removes the temp dir.
    fileprivate func tearDown() {
        let problems = unmount()
        for problem in problems { Issue.record("teardown: \(problem); daemon log:\n\(log.suffix(4000))") }
        if !MountTable.isMountPoint(mountpoint) { removeTree(base) }
    }
}

/// Mounts a fresh temp dir, runs `body` with it, and always unmounts and
/// cleans up afterwards, also when `body` throws or an expectation failed.
func withMount<T>(options: [String] = [], inPlace: Bool = false, prepare: (String) throws -> Void = { _ in },
                  _ body: (MountedFS) throws -> T) throws -> T {
    let fs = try MountedFS(options: options, inPlace: inPlace, prepare: prepare)
    defer { fs.tearDown() }
    return try body(fs)
}
