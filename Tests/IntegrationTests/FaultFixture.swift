// Helpers for the fault-injection tests (Fault*Tests.swift): steering a
// mount through its `.faultfs/control` file, reading `stats` and `events`,
// a call on a background thread, a monotonic clock. Built on the shared
// fixture (MountedFS.swift, Syscalls.swift); adds to it only here.
import FaultRules
import Foundation
import Glibc
import Synchronization
import Testing

// MARK: the control directory

extension MountedFS {
    /// `MNT/NAME/FILE` for the control directory NAME (`-o control=NAME`).
    func controlFile(_ file: String = "control", directory: String = ".faultfs") -> String {
        mountpoint + "/" + directory + "/" + file
    }

    /// Writes `text` to the control file in one write() (a newline appended
    /// unless it ends with one) and returns what write() returned.
    @discardableResult
    func control(_ text: String, directory: String = ".faultfs") -> Outcome {
        let opened = openFile(controlFile(directory: directory), O_WRONLY | O_CLOEXEC)
        guard opened.ok else { return opened }
        let fd = Int32(opened.value)
        defer { close(fd) }
        return writeBytes(fd, Array((text.hasSuffix("\n") ? text : text + "\n").utf8))
    }

    /// Sends control lines (all in one write) and throws unless accepted.
    func arm(_ lines: String..., directory: String = ".faultfs") throws {
        let text = lines.joined(separator: "\n")
        let outcome = control(text, directory: directory)
        guard outcome.ok else {
            throw SetupError("control refused \(text.debugDescription): \(outcome); \(controlText(directory: directory))")
        }
    }

    /// What `cat control` shows.
    func controlText(directory: String = ".faultfs") -> String {
        textOfFile(controlFile(directory: directory))
    }

    /// The rule lines of the control file (comments and counters left out).
    func ruleLines(directory: String = ".faultfs") -> [String] {
        controlText(directory: directory).split(separator: "\n").compactMap { line in
            guard !line.hasPrefix("#") else { return nil }
            let rule = line.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false)[0]
            return rule.trimmingCharacters(in: .whitespaces)
        }
    }

    /// `.faultfs/stats` as op -> column -> value.
    func stats(directory: String = ".faultfs") -> [String: [String: Int64]] {
        let lines = textOfFile(controlFile("stats", directory: directory)).split(separator: "\n")
        guard let header = lines.first?.split(separator: " ").map(String.init) else { return [:] }
        var table: [String: [String: Int64]] = [:]
        for line in lines.dropFirst() {
            let cells = line.split(separator: " ").map(String.init)
            guard cells.count == header.count else { continue }
            var row: [String: Int64] = [:]
            for (name, cell) in zip(header.dropFirst(), cells.dropFirst()) { row[name] = Int64(cell) }
            table[cells[0]] = row
        }
        return table
    }

    /// One counter of `.faultfs/stats` (e.g. op "writeback", column "stalled_now").
    func counter(_ op: String, _ column: String) -> Int64 {
        stats()[op]?[column] ?? -1
    }

    /// Every line of `.faultfs/events`, decoded.
    func events(directory: String = ".faultfs") -> [FaultEvent] {
        let text = textOfFile(controlFile("events", directory: directory))
        return text.split(separator: "\n").compactMap { line in
            do { return FaultEvent(try InjectionEvent.decode(String(line))) } catch {
                Issue.record("events: not an event line (\(error)): \(line)")
                return nil
            }
        }
    }

    /// Runs the faultfs executable (`faultfs ctl ...`, `faultfs umount ...`).
    func faultfs(_ arguments: [String]) throws -> CommandResult {
        try runCommand(try FaultFSBinary.path(), arguments, limitSeconds: 60)
    }
}

/// A file's content as text ("" when it cannot be read).
func textOfFile(_ path: String) -> String {
    (try? readFile(path).get()).map { String(decoding: $0, as: UTF8.self) } ?? ""
}

/// One line of `.faultfs/events`, decoded by FaultRules' event codec; the
/// fields as the tests compare them (words, not enums).
struct FaultEvent: CustomStringConvertible {
    var timeNs: Int64
    var rule: String
    var action: String
    var op: String
    var path: String?
    var inode: UInt64
    var offset: Int64?
    var length: Int64
    var errno: Int32
    var errnoName: String?
    var pid: Int32
    var comm: String?
    var writeback: Bool
    /// `corrupt`: bytes changed, and the file offsets of the first ones.
    var changed: Int64
    var changedOffsets: [Int64]

    init(_ e: InjectionEvent) {
        timeNs = e.timeNs
        rule = e.ruleID
        action = e.action.name
        op = e.op.name
        path = e.path
        inode = e.inode
        offset = e.offset < 0 ? nil : e.offset
        length = e.length
        errno = e.errno
        errnoName = FaultRules.errnoName(e.errno)
        pid = e.pid
        comm = e.comm
        writeback = e.writeback
        changed = e.changed
        changedOffsets = e.changedOffsets
    }

    var description: String {
        "\(rule) \(action) \(op) path=\(path ?? "null") offset=\(offset.map(String.init) ?? "null") length=\(length) "
            + "errno=\(errno) pid=\(pid) comm=\(comm ?? "null") writeback=\(writeback)"
    }
}

// MARK: files

/// Opens `path` for the test (throws when it cannot).
func openOrThrow(_ path: String, _ flags: Int32, _ mode: mode_t = 0o644) throws -> Int32 {
    Int32(try check("open \(path)", openFile(path, flags | O_CLOEXEC, mode)))
}

/// The backing file's bytes; throws when it is missing or unreadable (so
/// "nothing stored" never passes for a file that was never created).
func backingBytes(_ fs: MountedFS, _ relative: String) throws -> [UInt8] {
    try readFile(fs.backing(relative)).get()
}

/// Whether `haystack` holds `needle` somewhere (data that reached a file).
func containsBytes(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool {
    guard !needle.isEmpty, haystack.count >= needle.count else { return needle.isEmpty }
    for start in 0...(haystack.count - needle.count) where haystack[start] == needle[0] {
        if haystack[start..<(start + needle.count)].elementsEqual(needle) { return true }
    }
    return false
}

// MARK: time, threads, processes

func monotonicNow() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

/// The calling thread's id: what FUSE reports as a request's pid.
func currentThreadID() -> Int32 { gettidFunction() }

/// glibc's gettid(), looked up by name (the Glibc module does not import it).
private let gettidFunction: @convention(c) () -> Int32 = {
    guard let symbol = dlsym(dlopen(nil, RTLD_NOW), "gettid") else { fatalError("glibc has no gettid") }
    return unsafeBitCast(symbol, to: (@convention(c) () -> Int32).self)
}()

/// Runs `body` on a new thread; `result` is nil until it returns.
final class BackgroundCall<T: Sendable>: Sendable {
    private let box = Mutex<T?>(nil)

    init(_ body: @escaping @Sendable () -> T) {
        let thread = Thread { [self] in
            let value = body()
            box.withLock { $0 = value }
        }
        thread.start()
    }

    var result: T? { box.withLock { $0 } }

    /// Polls every 10 ms, at most `polls` times (a hang guard, not a timing check).
    func wait(polls: Int = 6000) -> T? {
        for _ in 0..<polls {
            if let value = result { return value }
            usleep(10_000)
        }
        return result
    }
}

extension BackgroundCall {
    /// Waits up to `seconds` for the call to return (polling every 10 ms).
    func wait(seconds: Int) -> T? { wait(polls: seconds * 100) }
}

extension MountedFS {
    /// Runs `body` (a call that may block on the mount: a write or fsync
    /// under a stall, say) on its own thread and waits at most `seconds` for
    /// it -- a loose bound that only a hang misses. On a miss it records an
    /// issue naming `what`, then unblocks the thread so the run goes on:
    /// it releases every stall and clears the rules, and if that does not
    /// help within 10 s it kills the daemon (the kernel then fails every
    /// pending request with ENOTCONN). Returns nil after a miss.
    func call<T: Sendable>(_ what: String, within seconds: Int, _ body: @escaping @Sendable () -> T) -> T? {
        finish(BackgroundCall(body), what, within: seconds)
    }

    /// Waits for a call already started (see `call(_:within:_:)`).
    func finish<T: Sendable>(_ call: BackgroundCall<T>, _ what: String, within seconds: Int) -> T? {
        if let value = call.wait(seconds: seconds) { return value }
        Issue.record("\(what) did not return within \(seconds) s: a hang (releasing every stall, then killing the daemon)")
        let control = controlFile()
        // Through a thread of its own: the control file may hang as well.
        _ = BackgroundCall { () -> Outcome in
            let opened = openFile(control, O_WRONLY | O_CLOEXEC)
            guard opened.ok else { return opened }
            defer { close(Int32(opened.value)) }
            return writeBytes(Int32(opened.value), Array("clear\nrelease\ncapacity off\n".utf8))
        }
        if call.wait(seconds: 10) != nil { return nil }
        killDaemon()
        if call.wait(seconds: 30) == nil {
            Issue.record("\(what) is still blocked 30 s after the daemon was killed")
        }
        return nil
    }
}

/// Polls `condition` every 10 ms, at most `polls` times; true once it holds.
func pollUntil(polls: Int = 1000, _ condition: () -> Bool) -> Bool {
    for _ in 0..<polls {
        if condition() { return true }
        usleep(10_000)
    }
    return condition()
}
