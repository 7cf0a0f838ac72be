@testable import FaultLayer
import FaultRules
import Foundation
import FuseKit
import Glibc
import Testing

/// The fault layer over a fresh `MemoryFileSystem`, called the way the
/// kernel's requests would call it (through `FileSystem`), by paths
/// (`RequestDriver`).
final class Layer: RequestDriver, @unchecked Sendable {
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

    // MARK: the control files

    /// Writes `text` to `control`, expecting it to be accepted.
    func arm(_ text: String, sourceLocation: SourceLocation = #_sourceLocation) {
        do throws(Errno) { try control(text + "\n") } catch {
            Issue.record("control refused \(text): \(error)", sourceLocation: sourceLocation)
        }
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
