import FaultRules
import FuseKit
import Glibc
import System
import Synchronization

/// Checks every request against the rule engine, then fails, delays,
/// stalls, drops, shortens, corrupts or passes it on.
///
/// The check costs one relaxed atomic load (the engine's armed-ops mask)
/// plus a relaxed counter increment when no rule targets the operation: no
/// allocation, no lock.
final class FaultInjector: ForwardingFileSystem, @unchecked Sendable {
    let inner: any FileSystem
    let engine: RuleEngine
    let gate = StallGate()
    private let recorder: InjectionRecorder
    private var stats: OpStatistics { recorder.stats }
    // Set once by `initialize`, before any request.
    private var session: SessionState?
    /// Callers looked up in /proc before a decision (for tests of `needs`).
    let callerLookups = Atomic<Int>(0)

    init(wrapping inner: any FileSystem, tree: any BackingTree, engine: RuleEngine, recorder: InjectionRecorder) {
        self.inner = inner
        self.engine = engine
        self.recorder = recorder
    }

    // MARK: the check

    /// What the armed rules need to know about one request, gathered before
    /// the engine takes a lock (see the lock order in FaultLayer.swift).
    struct GatheredDetails: RequestDetails {
        let gatheredPath: String?
        let gatheredComm: String?
        let gatheredProcessID: Int32?
        func path() -> String? { gatheredPath }
        func comm() -> String? { gatheredComm }
        func processID() -> Int32? { gatheredProcessID }
    }

    /// A decision the request's own handler carries out (drop, short,
    /// corrupt), with what its event names.
    struct Injection {
        let decision: Decision
        let info: RequestInfo
        let path: String?
        let comm: String?
    }

    /// Checks one request; returns a drop, short or corrupt for the handler
    /// to act on, nil to pass it on, or throws the injected errno.
    @inline(__always)
    private func check(_ op: FaultOp, _ caller: Caller, node: NodeID, name: FileName? = nil,
                       offset: off_t = -1, length: Int64 = 0) throws(Errno) -> Injection? {
        stats[op].seen.add(1, ordering: .relaxed)
        guard engine.armedOps.contains(op) else { return nil }
        return try inject(op, caller, node: node, name: name, offset: offset, length: length)
    }

    @inline(never)
    private func inject(_ op: FaultOp, _ caller: Caller, node: NodeID, name: FileName?,
                        offset: off_t, length: Int64) throws(Errno) -> Injection? {
        let info = RequestInfo(op: op, inode: name == nil ? recorder.inodeNumber(of: node) : 0,
                               offset: Int64(offset), length: length, pid: caller.pid)
        let ticket = gate.ticket()  // before the decision: see StallGate
        let needs = engine.needs(for: op)
        let pid = caller.pid
        if pid > 0 && !needs.isDisjoint(with: [.comm, .processID]) { callerLookups.add(1, ordering: .relaxed) }
        let details = GatheredDetails(
            gatheredPath: needs.contains(.path) ? recorder.path(of: node, name: name) : nil,
            gatheredComm: needs.contains(.comm) && pid > 0 ? ProcFS.comm(pid: pid) : nil,
            gatheredProcessID: needs.contains(.processID) && pid > 0 ? ProcFS.tgid(tid: pid) : nil)
        guard let decision = engine.decide(info, details) else { return nil }
        // The event names the path and comm even when no rule needed them.
        let path = needs.contains(.path) ? details.gatheredPath : recorder.path(of: node, name: name)
        let comm = needs.contains(.comm) || pid <= 0 ? details.gatheredComm : ProcFS.comm(pid: pid)
        let counters = stats[op]
        func record(_ action: InjectionEvent.Action, errno: Int32 = 0) {
            recorder.record(decision.ruleID, action, info, path: path, comm: comm, errno: errno)
        }
        switch decision.action {
        case .fail(let errno):
            counters.failed.add(1, ordering: .relaxed)
            record(.fail, errno: errno)
            throw Errno(errno)
        case .delay(let nanoseconds):
            counters.delayed.add(1, ordering: .relaxed)
            record(.delay)
            SystemClock.sleep(nanoseconds: Int64(clamping: nanoseconds))
            return nil
        case .stall(let timeout):
            counters.stalledNow.add(1, ordering: .relaxed)
            counters.stalledTotal.add(1, ordering: .relaxed)
            record(.stall)
            _ = gate.wait(ruleID: decision.ruleID, ticket: ticket, timeoutNanoseconds: timeout, session: session)
            counters.stalledNow.subtract(1, ordering: .relaxed)
            record(.release)
            return nil
        case .drop:
            counters.dropped.add(1, ordering: .relaxed)
            record(.drop)
        case .short:
            counters.shortened.add(1, ordering: .relaxed)
            record(.short)
        case .corrupt:
            break  // counted and recorded once the data has been changed (`corrupt`)
        }
        return Injection(decision: decision, info: info, path: path, comm: comm)
    }

    /// Changes `count` bytes of `data` with `pattern`, chosen by the decision's seed.
    private func corrupt(_ data: inout [UInt8], _ count: Int64, _ pattern: CorruptionPattern,
                         _ injection: Injection) -> Corruption.Outcome {
        data.withUnsafeMutableBytes {
            Corruption.apply(to: $0, bytes: count, pattern: pattern, seed: injection.decision.corruptionSeed)
        }
    }

    /// Counts and records a corruption that took effect: the event names the
    /// data's offset and length (a read near the end of a file returns less
    /// than it asked) and what changed.
    private func record(_ outcome: Corruption.Outcome, of injection: Injection, length: Int) {
        stats[injection.info.op].corrupted.add(1, ordering: .relaxed)
        var info = injection.info
        info.length = Int64(length)
        let start = max(info.offset, 0)
        recorder.record(injection.decision.ruleID, .corrupt, info, path: injection.path, comm: injection.comm,
                        changed: Int64(outcome.changed), changedOffsets: outcome.firstPositions.map { start + Int64($0) })
    }

    // MARK: lifecycle

    func initialize(_ conn: inout Connection, session: SessionState) {
        self.session = session
        inner.initialize(&conn, session: session)
    }

    func destroy() {
        gate.release(ruleID: nil)
        inner.destroy()
    }

    // MARK: names

    func forget(node: NodeID, count: UInt64) {
        recorder.paths.forget(node)  // its id may name another inode next
        inner.forget(node: node, count: count)
    }

    func setattr(_ caller: Caller, node: NodeID, changes: AttributeChanges) throws(Errno) -> Attributes {
        let resizes = changes.fields.contains(.size)
        _ = try check(resizes ? .truncate : .setattr, caller, node: node, offset: resizes ? changes.size : -1)
        return try inner.setattr(caller, node: node, changes: changes)
    }

    func mknod(_ caller: Caller, parent: NodeID, name: FileName, mode: mode_t, device: dev_t) throws(Errno) -> Entry {
        _ = try check(.mknod, caller, node: parent, name: name)
        return try inner.mknod(caller, parent: parent, name: name, mode: mode, device: device)
    }

    func mkdir(_ caller: Caller, parent: NodeID, name: FileName, mode: mode_t) throws(Errno) -> Entry {
        _ = try check(.mkdir, caller, node: parent, name: name)
        return try inner.mkdir(caller, parent: parent, name: name, mode: mode)
    }

    func symlink(_ caller: Caller, target: FileName, parent: NodeID, name: FileName) throws(Errno) -> Entry {
        _ = try check(.symlink, caller, node: parent, name: name)
        return try inner.symlink(caller, target: target, parent: parent, name: name)
    }

    func link(_ caller: Caller, node: NodeID, newParent: NodeID, newName: FileName) throws(Errno) -> Entry {
        _ = try check(.link, caller, node: newParent, name: newName)
        return try inner.link(caller, node: node, newParent: newParent, newName: newName)
    }

    func unlink(_ caller: Caller, parent: NodeID, name: FileName) throws(Errno) {
        _ = try check(.unlink, caller, node: parent, name: name)
        try inner.unlink(caller, parent: parent, name: name)
        recorder.paths.forgetAll()
    }

    func rmdir(_ caller: Caller, parent: NodeID, name: FileName) throws(Errno) {
        _ = try check(.rmdir, caller, node: parent, name: name)
        try inner.rmdir(caller, parent: parent, name: name)
        recorder.paths.forgetAll()
    }

    func rename(_ caller: Caller, parent: NodeID, name: FileName, newParent: NodeID, newName: FileName, flags: UInt32) throws(Errno) {
        _ = try check(.rename, caller, node: parent, name: name)
        try inner.rename(caller, parent: parent, name: name, newParent: newParent, newName: newName, flags: flags)
        recorder.paths.forgetAll()
    }

    // MARK: files

    func open(_ caller: Caller, node: NodeID, flags: Int32) throws(Errno) -> OpenedFile {
        _ = try check(.open, caller, node: node)
        return try inner.open(caller, node: node, flags: flags)
    }

    func create(_ caller: Caller, parent: NodeID, name: FileName, mode: mode_t, flags: Int32) throws(Errno) -> (Entry, OpenedFile) {
        _ = try check(.create, caller, node: parent, name: name)
        return try inner.create(caller, parent: parent, name: name, mode: mode, flags: flags)
    }

    func read(_ caller: Caller, node: NodeID, handle: UInt64, offset: off_t, size: Int) throws(Errno) -> ReadData {
        let injection = try check(.read, caller, node: node, offset: offset, length: Int64(size))
        let data = try inner.read(caller, node: node, handle: handle, offset: offset, size: size)
        guard let injection, case .corrupt(let count, let pattern) = injection.decision.action else { return data }
        // Only now, and only for this read, is the data copied into memory.
        var bytes = try data.inMemory()
        record(corrupt(&bytes, count, pattern, injection), of: injection, length: bytes.count)
        return .bytes(bytes)
    }

    func write(_ caller: Caller, node: NodeID, handle: UInt64, data: WriteSource, offset: off_t, fromWriteback: Bool) throws(Errno) -> Int {
        let op: FaultOp = fromWriteback ? .writeback : .syncwrite
        let injection = try check(op, caller, node: node, offset: offset, length: Int64(data.count))
        switch injection?.decision.action {
        case .drop?:
            return data.count  // acknowledged, never stored: a lost write
        case .short(let bytes)?:
            let stored = Int(FaultAction.shortWriteLength(requested: Int64(data.count), bytes: bytes))
            return try data.withPrefix(stored) { (prefix) throws(Errno) in
                try inner.write(caller, node: node, handle: handle, data: prefix, offset: offset, fromWriteback: fromWriteback)
            }
        case .corrupt(let count, let pattern)?:
            let injection = injection!  // the action came from it
            // Only now, and only for this write, is the data copied into memory.
            // A write that then fails (ENOSPC below us, say) corrupted nothing and records nothing.
            var bytes = try data.bytes(limit: data.count)
            let outcome = corrupt(&bytes, count, pattern, injection)
            let stored = try WriteSource.withBytes(bytes) { (source) throws(Errno) in
                try inner.write(caller, node: node, handle: handle, data: source, offset: offset, fromWriteback: fromWriteback)
            }
            record(outcome, of: injection, length: bytes.count)
            return stored
        default:
            return try inner.write(caller, node: node, handle: handle, data: data, offset: offset, fromWriteback: fromWriteback)
        }
    }

    func flush(_ caller: Caller, node: NodeID, handle: UInt64) throws(Errno) {
        _ = try check(.flush, caller, node: node)
        try inner.flush(caller, node: node, handle: handle)
    }

    func fsync(_ caller: Caller, node: NodeID, handle: UInt64, dataOnly: Bool) throws(Errno) {
        _ = try check(dataOnly ? .fdatasync : .fsync, caller, node: node)
        try inner.fsync(caller, node: node, handle: handle, dataOnly: dataOnly)
    }

    func fallocate(_ caller: Caller, node: NodeID, handle: UInt64, mode: Int32, offset: off_t, length: off_t) throws(Errno) {
        _ = try check(.fallocate, caller, node: node, offset: offset, length: Int64(length))
        try inner.fallocate(caller, node: node, handle: handle, mode: mode, offset: offset, length: length)
    }

    func copyFileRange(_ caller: Caller, from source: NodeID, sourceHandle: UInt64, sourceOffset: off_t,
                       to destination: NodeID, destinationHandle: UInt64, destinationOffset: off_t,
                       length: Int, flags: Int32) throws(Errno) -> Int {
        _ = try check(.copyFileRange, caller, node: destination, offset: destinationOffset, length: Int64(length))
        return try inner.copyFileRange(caller, from: source, sourceHandle: sourceHandle, sourceOffset: sourceOffset,
                                       to: destination, destinationHandle: destinationHandle,
                                       destinationOffset: destinationOffset, length: length, flags: flags)
    }

    // MARK: directories

    func fsyncdir(_ caller: Caller, node: NodeID, handle: UInt64, dataOnly: Bool) throws(Errno) {
        _ = try check(.fsyncdir, caller, node: node)
        try inner.fsyncdir(caller, node: node, handle: handle, dataOnly: dataOnly)
    }

    // MARK: the rest

    func setxattr(_ caller: Caller, node: NodeID, name: FileName, value: UnsafeRawBufferPointer, flags: Int32) throws(Errno) {
        _ = try check(.setxattr, caller, node: node)
        try inner.setxattr(caller, node: node, name: name, value: value, flags: flags)
    }
}
