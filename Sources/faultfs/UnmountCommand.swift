// `faultfs umount`: unmount a faultfs mount, including one whose daemon died
// (every access then fails with ENOTCONN, "Transport endpoint is not connected").
import ArgumentParser
import FaultLayer
import FaultRules
import Glibc
import Synchronization
import System

struct UnmountCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "umount",
        abstract: "Unmount a faultfs mount (also one whose daemon died).",
        aliases: ["unmount"])

    @Flag(name: [.short, .long], help: "Detach now even if busy (MNT_DETACH); the file system goes away once no longer used.")
    var lazy = false

    @Option(help: "The control directory's name (-o control=NAME at mount), where the daemon's status is.")
    var control = ".faultfs"

    @Argument(help: "The faultfs mount point.")
    var mountpoint: String

    func run() throws {
        try reportingFailures { try unmount() }
    }

    private func unmount() throws(CLIError) {
        let path = Self.resolve(mountpoint)
        if BlockMode.hasState(target: path) { return try BlockMode.unmount(target: path) }
        let entries = MountTable.current()
        guard let top = MountTable.topMount(at: path, in: entries) else {
            throw CLIError("\(path) is not a mount point")
        }
        guard top.isFaultFS else {
            throw CLIError("\(path) is not a faultfs mount (it is \(top.fileSystemType))")
        }

        // Found before unmounting: afterwards nothing ties it to the path.
        let daemons = Self.daemons(servingAt: path, controlDirectory: control)
        if lazy {
            try detach(path)
            // The daemon sees the mount leave the table and lets held
            // requests go; it ends once nothing on the mount is open.
            let running = waitForExit(daemons, seconds: 3)
            if running.isEmpty {
                print("faultfs: detached \(path); its daemon has exited")
            } else {
                print("faultfs: detached \(path): gone from the mount table, held (stalled) requests released; "
                      + "the daemon (pid \(running.map(String.init).joined(separator: " "))) serves the files still open there and exits when the last is closed")
            }
            return
        }
        if umount2(path, 0) != 0 {
            try unmountFailed(path, errno: errno)
        }
        if daemons.isEmpty { Self.removeCrashGraveyard(source: top.source) }
        // So that a script may reuse the directory, or the source, at once.
        let running = waitForExit(daemons, seconds: 10)
        if !running.isEmpty {
            printError("faultfs: unmounted, but the daemon (pid \(running.map(String.init).joined(separator: " "))) still runs after 10 s")
        }
    }

    /// A dead daemon left its crash graveyard in the backing root (a live
    /// one removes it itself at unmount). The source is the mount's fsname:
    /// SOURCE unless `-o fsname=` named it otherwise.
    static func removeCrashGraveyard(source: String) {
        guard source.hasPrefix("/") else { return }
        let root = open(source, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard root >= 0 else { return }
        FaultLayer.removeCrashGraveyard(rootFD: root)
        close(root)
    }

    private func unmountFailed(_ path: String, errno: Int32) throws(CLIError) {
        switch errno {
        case ENOTCONN:
            try detach(path) // the daemon is gone: nothing to flush
        case EBUSY:
            throw CLIError("\(path) is busy: a process has a file open or its working directory there; close them, or use --lazy")
        case EPERM:
            throw CLIError("\(path): unmounting needs root (or use: fusermount3 -u \(path))")
        case let code:
            throw CLIError("cannot unmount \(path): \(Errno(code).description)")
        }
    }

    /// The daemon serving the mount at `path`, as its status file says; none
    /// when the daemon is dead (the file cannot be read then). The file is
    /// read on a thread, waited for at most 2 s: a stopped daemon would hold
    /// the read forever, and unmounting must not depend on it.
    static func daemons(servingAt path: String, controlDirectory: String) -> [pid_t] {
        let statusPath = MountStatus.path(mountPoint: path, controlDirectory: controlDirectory)
        final class Answer: Sendable { let text = Mutex<String??>(nil) }
        let answer = Answer()
        startThread { let text = File.readText(statusPath); answer.text.withLock { $0 = .some(text) } }
        let deadline = SystemClock.monotonicNanoseconds() + 2_000_000_000
        while SystemClock.monotonicNanoseconds() < deadline {
            if let read = answer.text.withLock({ $0 }) {
                guard let text = read else { return [] }
                do { return [try MountStatus.decode(text).pid] } catch {
                    printError("faultfs: \(statusPath): \(error)")
                    return []
                }
            }
            SystemClock.sleep(nanoseconds: 5_000_000)
        }
        return []
    }

    /// Waits until none of `pids` runs (a zombie counts as gone); returns
    /// those still running after `seconds`.
    private func waitForExit(_ pids: [pid_t], seconds: Int) -> [pid_t] {
        var running = pids
        for _ in 0..<(seconds * 20) {
            running = running.filter { pid in
                guard kill(pid, 0) == 0, let stat = File.readText("/proc/\(pid)/stat"),
                      let close = stat.lastIndex(of: ")") else { return false }
                return !stat[close...].hasPrefix(") Z")
            }
            if running.isEmpty { break }
            usleep(50_000)
        }
        return running
    }

    private func detach(_ path: String) throws(CLIError) {
        guard umount2(path, Int32(MNT_DETACH)) == 0 else {
            throw CLIError("cannot detach \(path): \(Errno.current.description)")
        }
    }

    /// The canonical path, as mountinfo spells it. realpath fails on a dead
    /// mount (stat says ENOTCONN), so then resolve only the parent.
    static func resolve(_ path: String) -> String {
        if let resolved = try? Path.canonical(path) { return resolved }
        let absolute = Path.absolute(path)
        guard let slash = absolute.lastIndex(of: "/"), absolute != "/" else { return absolute }
        let parent = slash == absolute.startIndex ? "/" : String(absolute[..<slash])
        let name = absolute[absolute.index(after: slash)...]
        guard let resolvedParent = try? Path.canonical(parent) else { return absolute }
        return resolvedParent == "/" ? "/" + name : resolvedParent + "/" + name
    }
}
