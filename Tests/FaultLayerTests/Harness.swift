@testable import FaultLayer
import FaultRules
import Foundation
import FuseKit
import Glibc
import Testing

/// The fault layer over a fresh `MemoryFileSystem`, called the way the
/// kernel's requests would call it (through `FileSystem`), by paths.
final class Layer: @unchecked Sendable {
    let inner = MemoryFileSystem()
    let faults: FaultLayer
    /// What the kernel talks to: the top of the fault layer.
    let fs: any FileSystem
    /// Who sends the requests; root unless a test says otherwise.
    var caller = Caller(uid: 0, gid: 0, pid: 0, umask: 0o022)
    /// The mounting user: may write `control` besides root.
    static let owner: uid_t = 1000

    init(writebackCache: Bool = true, eventsPath: String? = nil, adjust: (inout FaultLayerOptions) -> Void = { _ in }) throws {
        var options = FaultLayerOptions()
        options.owner = Self.owner
        options.group = Self.owner
        options.writebackCache = writebackCache
        options.eventsPath = eventsPath
        adjust(&options)
        faults = try FaultLayer(wrapping: inner, tree: inner, options: options)
        fs = faults.fileSystem
    }

    // MARK: names and files

    /// The node of `path` (relative, "" for the root).
    func node(_ path: String) throws(Errno) -> NodeID {
        var node = rootNodeID
        for part in path.split(separator: "/") {
            node = try withName(String(part)) { (name) throws(Errno) in try fs.lookup(caller, parent: node, name: name).node }
        }
        return node
    }

    /// The parent's node and the last name of `path`.
    private func split(_ path: String) throws(Errno) -> (NodeID, String) {
        let parts = path.split(separator: "/")
        return (try node(parts.dropLast().joined(separator: "/")), String(parts.last!))
    }

    /// An open file: its node and handle.
    struct OpenFile { let node: NodeID; let handle: UInt64 }

    @discardableResult
    func create(_ path: String) throws(Errno) -> OpenFile {
        let (parent, last) = try split(path)
        let (entry, opened) = try withName(last) { (name) throws(Errno) in
            try fs.create(caller, parent: parent, name: name, mode: 0o644, flags: O_RDWR)
        }
        return OpenFile(node: entry.node, handle: opened.handle)
    }

    func open(_ path: String, flags: Int32 = O_RDWR) throws(Errno) -> OpenFile {
        let node = try node(path)
        return OpenFile(node: node, handle: try fs.open(caller, node: node, flags: flags).handle)
    }

    @discardableResult
    func mkdir(_ path: String) throws(Errno) -> NodeID {
        let (parent, last) = try split(path)
        return try withName(last) { (name) throws(Errno) in try fs.mkdir(caller, parent: parent, name: name, mode: 0o755).node }
    }

    func unlink(_ path: String) throws(Errno) {
        let (parent, last) = try split(path)
        try withName(last) { (name) throws(Errno) in try fs.unlink(caller, parent: parent, name: name) }
    }

    func rename(_ from: String, _ to: String) throws(Errno) {
        let (parent, last) = try split(from)
        let (newParent, newLast) = try split(to)
        try withName(last) { (name) throws(Errno) in
            try withName(newLast) { (newName) throws(Errno) in
                try fs.rename(caller, parent: parent, name: name, newParent: newParent, newName: newName, flags: 0)
            }
        }
    }

    /// A write(2), or with `writeback` a write from the page cache, which
    /// comes from the kernel with uid, gid and pid 0.
    @discardableResult
    func write(_ file: OpenFile, _ bytes: [UInt8], at offset: off_t = 0, writeback: Bool = false) throws(Errno) -> Int {
        let sender = writeback ? Caller(uid: 0, gid: 0, pid: 0, umask: 0) : caller
        return try WriteSource.withBytes(bytes) { (source) throws(Errno) in
            try fs.write(sender, node: file.node, handle: file.handle, data: source, offset: offset, fromWriteback: writeback)
        }
    }

    func read(_ file: OpenFile, at offset: off_t = 0, size: Int = 1 << 16) throws(Errno) -> [UInt8] {
        switch try fs.read(caller, node: file.node, handle: file.handle, offset: offset, size: size) {
        case .bytes(let bytes): return bytes
        case .file: Issue.record("the fake answers reads from memory"); return []
        }
    }

    func truncate(_ file: OpenFile, to size: off_t) throws(Errno) {
        _ = try fs.setattr(caller, node: file.node, changes: AttributeChanges(
            fields: [.size], mode: 0, uid: 0, gid: 0, size: size, atime: timespec(), mtime: timespec(), handle: file.handle))
    }

    func fallocate(_ file: OpenFile, offset: off_t, length: off_t) throws(Errno) {
        try fs.fallocate(caller, node: file.node, handle: file.handle, mode: 0, offset: offset, length: length)
    }

    func statfs() throws(Errno) -> statvfs { try fs.statfs(caller, node: rootNodeID) }

    // MARK: the control files

    /// Writes `text` to `.faultfs/control` in one write, as `echo` would.
    func control(_ text: String) throws(Errno) {
        let file = try open(".faultfs/control", flags: O_WRONLY | O_TRUNC)
        defer { close(file) }
        let written = try write(file, Array(text.utf8))
        #expect(written == text.utf8.count)
    }

    /// Writes `text` to `control`, expecting it to be accepted.
    func arm(_ text: String, sourceLocation: SourceLocation = #_sourceLocation) {
        do throws(Errno) { try control(text + "\n") } catch {
            Issue.record("control refused \(text): \(error)", sourceLocation: sourceLocation)
        }
    }

    /// A control file's contents, read in chunks of `chunk` bytes.
    func controlFile(_ name: String, chunk: Int = 4096) throws(Errno) -> String {
        let file = try open(".faultfs/" + name, flags: O_RDONLY)
        defer { close(file) }
        var bytes: [UInt8] = []
        while true {
            let part = try read(file, at: off_t(bytes.count), size: chunk)
            if part.isEmpty { break }
            bytes += part
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// What the kernel does when the file is closed and its dentry dropped.
    func close(_ file: OpenFile) {
        fs.release(caller, node: file.node, handle: file.handle)
        fs.forget(node: file.node, count: 1)
    }

    /// One row of `stats`: column name → value.
    func stats(_ op: FaultOp) -> [String: Int] {
        let lines = ((try? controlFile("stats")) ?? "").split(separator: "\n").map { $0.split(separator: " ").map(String.init) }
        guard let header = lines.first, let row = lines.first(where: { $0.first == op.name }) else {
            Issue.record("no stats row for \(op.name)")
            return [:]
        }
        return Dictionary(uniqueKeysWithValues: zip(header.dropFirst(), row.dropFirst().map { Int($0) ?? -1 }))
    }

    /// The lines of `events`, decoded.
    func events() -> [Event] {
        let text = (try? controlFile("events")) ?? ""
        return text.split(separator: "\n").compactMap { Event(json: String($0)) }
    }
}

/// One line of `.faultfs/events`.
struct Event {
    var rule: String, action: String, op: String
    var path: String?, offset: Int?, length: Int
    var errno: Int, errnoName: String?, pid: Int, comm: String?, writeback: Bool
    /// `corrupt`: bytes changed, and the file offsets of the first ones.
    var changed: Int, changedOffsets: [Int]

    init?(json: String, sourceLocation: SourceLocation = #_sourceLocation) {
        let event: InjectionEvent
        do { event = try InjectionEvent.decode(json) } catch {
            Issue.record("not an event line (\(error)): \(json)", sourceLocation: sourceLocation)
            return nil
        }
        rule = event.ruleID
        action = event.action.name
        op = event.op.name
        path = event.path
        offset = event.offset < 0 ? nil : Int(event.offset)
        length = Int(event.length)
        errno = Int(event.errno)
        errnoName = FaultRules.errnoName(event.errno)
        pid = Int(event.pid)
        comm = event.comm
        writeback = event.writeback
        changed = Int(event.changed)
        changedOffsets = event.changedOffsets.map { Int($0) }
    }
}

/// Runs `body` with `name` as a request's file name.
func withName<T>(_ name: String, _ body: (FileName) throws(Errno) -> T) throws(Errno) -> T {
    let result = name.withCString { p in Result { () throws(Errno) -> T in try body(FileName(p)) } }
    return try result.get()
}

/// The errno a call threw, or nil if it succeeded. (Untyped: Swift 6 infers
/// `throws(any Error)` for a closure that calls throwing functions.)
func errnoOf(_ body: () throws -> Void, sourceLocation: SourceLocation = #_sourceLocation) -> Errno? {
    do { try body(); return nil } catch let error as Errno { return error } catch {
        Issue.record("not an errno: \(error)", sourceLocation: sourceLocation)
        return nil
    }
}

/// A call running on a thread of its own, so that a test can watch it stall
/// and release it. `result` waits at most `seconds`: a stall that is never
/// released fails the test instead of hanging it.
final class Background<T: Sendable>: @unchecked Sendable {
    private let done = DispatchSemaphore(value: 0)
    private var value: T?

    init(_ body: @escaping @Sendable () -> T) {
        Thread { [self] in
            value = body()
            done.signal()
        }.start()
    }

    func result(within seconds: Double) -> T? {
        guard done.wait(timeout: .now() + seconds) == .success else { return nil }
        done.signal()  // a later call answers at once
        return value
    }
}

/// Polls `condition` every 5 ms until it holds or `seconds` pass.
func eventually(within seconds: Double = 10, _ condition: () -> Bool) -> Bool {
    let deadline = ContinuousClock.now + .seconds(seconds)
    while ContinuousClock.now < deadline {
        if condition() { return true }
        usleep(5_000)
    }
    return condition()
}

/// This process's name as /proc shows it (what `comm=` compares).
func ownProcessName() -> String {
    let text = (try? String(contentsOfFile: "/proc/self/comm", encoding: .utf8)) ?? ""
    return text.trimmingCharacters(in: .newlines)
}

/// The calling thread's id (FUSE reports thread ids as the caller's pid).
func ownThreadID() -> pid_t {
    // /proc/thread-self links to "PID/task/TID".
    let target = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/thread-self")) ?? ""
    return pid_t(target.split(separator: "/").last ?? "") ?? getpid()
}
