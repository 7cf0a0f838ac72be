import FaultRules
import FuseKit
import Glibc
import System

/// What the fault layer's decorators share to account for what they do:
/// the per-op counters (`stats`), the event log (`events`), and the paths
/// that events and path rules name.
final class InjectionRecorder: @unchecked Sendable {
    let stats = OpStatistics()
    let events: EventLog
    let paths = PathCache()
    private let tree: any BackingTree
    // Set once by ControlFiles.initialize, before any request.
    private var session: SessionState?
    private var eventsNode: NodeID = 0

    init(tree: any BackingTree, eventsPath: String?) throws(Errno) {
        self.tree = tree
        events = try EventLog(path: eventsPath)
    }

    /// Tells the kernel, through `session`, when the events file `node` grows.
    func announceEvents(as node: NodeID, session: SessionState) {
        eventsNode = node
        self.session = session
    }

    /// The path of `node` (and `name` in it) below the mount root; nil when
    /// unknown. May ask the inner file system: call it under no engine lock.
    func path(of node: NodeID, name: FileName?) -> String? {
        guard let base = paths.path(of: node, resolve: { tree.path(of: node) }) else { return nil }
        guard let name else { return base }
        return base.isEmpty ? name.string : base + "/" + name.string
    }

    func inodeNumber(of node: NodeID) -> UInt64 { tree.inodeNumber(of: node) }

    /// Appends to the event log and tells the kernel the events file grew:
    /// with the writeback cache it keeps the file's size itself, so without
    /// this `tail -f` would never see the new lines (see `SnapshotNodes`).
    func append(_ event: InjectionEvent) {
        let size = events.append(event)
        session?.extendSize(of: eventsNode, to: size, lastByte: UInt8(ascii: "\n"))
    }

    func record(_ ruleID: String, _ action: InjectionEvent.Action, _ info: RequestInfo, path: String?, comm: String?,
                errno: Int32 = 0, changed: Int64 = 0, changedOffsets: [Int64] = []) {
        append(InjectionEvent(
            timeNs: SystemClock.realtimeNanoseconds(), ruleID: ruleID, action: action, op: info.op, path: path,
            inode: info.inode, offset: info.offset, length: info.length, errno: errno, pid: info.pid,
            comm: comm, writeback: info.op == .writeback, changed: changed, changedOffsets: changedOffsets))
    }

    /// Capacity exhausted: counted and logged like an injected ENOSPC.
    func noSpace(_ op: FaultOp, _ caller: Caller, node: NodeID, offset: off_t, length: Int64) -> Errno {
        stats[op].failed.add(1, ordering: .relaxed)
        let info = RequestInfo(op: op, inode: inodeNumber(of: node), offset: Int64(offset), length: length, pid: caller.pid)
        record("capacity", .fail, info, path: path(of: node, name: nil),
               comm: caller.pid > 0 ? ProcFS.comm(pid: caller.pid) : nil, errno: ENOSPC)
        return .ENOSPC
    }
}
