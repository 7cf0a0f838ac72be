import FaultRules
import FuseKit
import Glibc
import Synchronization

public struct FaultLayerOptions: Sendable {
    /// The control directory's name at the mount root.
    public var controlName = ".faultfs"
    /// Who may write `control` (besides root): the mounting user.
    public var owner: uid_t = getuid()
    public var group: gid_t = getgid()
    /// A file every injection is appended to as a JSON line.
    public var eventsPath: String?
    /// Whether the mount asks for the writeback cache (for rule warnings).
    public var writebackCache = true
    public init() {}
}

/// Decorates a file system with fault injection: every request is checked
/// against the rule engine and then failed, delayed, stalled, dropped,
/// shortened or passed on; `.faultfs/` at the root steers it.
///
/// The check costs one relaxed atomic load (the engine's armed-ops mask)
/// plus a relaxed counter increment when no rule targets the operation.
public final class FaultFileSystem: FileSystem, @unchecked Sendable {
    let inner: any FileSystem
    let tree: any BackingTree
    let options: FaultLayerOptions
    public let engine: RuleEngine
    let stats = OpStatistics()
    let events: EventLog
    let gate = StallGate()
    let capacity = CapacityModel()
    let paths = PathCache()
    let snapshots = SnapshotNodes()
    private let lastError = Mutex<String?>(nil)
    private let controlName: ContiguousArray<CChar>
    // Set once by `initialize`, before any request.
    private var session: SessionState?
    /// Called after every control write that was applied (set before
    /// mounting; block mode's re-resolver starts on it).
    public var onControlApplied: (@Sendable () -> Void)?

    public init(wrapping inner: any FileSystem, tree: any BackingTree, options: FaultLayerOptions) throws(Errno) {
        self.inner = inner
        self.tree = tree
        self.options = options
        engine = RuleEngine(features: MountFeatures(writebackCache: options.writebackCache))
        events = try EventLog(path: options.eventsPath)
        controlName = ContiguousArray(options.controlName.utf8CString)
    }

    // MARK: steering

    /// Applies control text (a write to `control`, or `-o rules=FILE`), all
    /// or nothing.
    public func applyControl(_ text: String) -> Result<Void, ParseError> {
        switch engine.apply(text: text) {
        case .failure(let error):
            lastError.withLock { $0 = error.shownText }
            return .failure(error)
        case .success(let commands):
            lastError.withLock { $0 = nil }
            for command in commands { carryOut(command) }
            onControlApplied?()
            return .success(())
        }
    }

    private func carryOut(_ command: ControlCommand) {
        switch command {
        case .release(let id):
            gate.release(ruleID: id)
        case .capacity(let bytes):
            capacity.set(limit: bytes, used: bytes == nil ? 0 : tree.usedBytes())
            appendEvent(InjectionEvent(timeNs: realtimeNanoseconds(), ruleID: "-", action: "capacity",
                                       op: .syncwrite, length: bytes ?? -1))
        case .resetCounters:
            stats.reset()
        case .add, .clear:
            break
        }
    }

    /// What reading `control` shows: the rules with their counters, the
    /// capacity model, and the last refused command.
    func controlText() -> String {
        var text = "# faultfs rules, in order (the first that matches acts); write a command to change them\n"
        text += engine.renderRules()
        if let limit = capacity.limitBytes {
            text += "# capacity \(limit) bytes, used \(capacity.usedBytes) bytes (kept by clear; 'capacity off' removes it)\n"
        }
        if let error = lastError.withLock({ $0 }) { text += "# error: \(error)\n" }
        return text
    }

    /// Appends to the event log and tells the kernel the events file grew:
    /// with the writeback cache it keeps the file's size itself, so without
    /// this `tail -f` would never see the new lines (see `SnapshotNodes`).
    private func appendEvent(_ event: InjectionEvent) {
        let size = events.append(event)
        session?.extendSize(of: ControlNode.events.rawValue, to: size, lastByte: UInt8(ascii: "\n"))
    }

    // MARK: the fault check

    /// Lazily computed request details for the engine and the event log.
    struct Details: RequestDetails {
        let tree: any BackingTree
        let paths: PathCache
        let node: NodeID
        let name: FileName?
        let pid: pid_t
        func path() -> String? {
            guard let base = paths.path(of: node, resolve: { tree.path(of: node) }) else { return nil }
            guard let name else { return base }
            return base.isEmpty ? name.string : base + "/" + name.string
        }
        func comm() -> String? { pid > 0 ? processName(pid) : nil }
        func processID() -> Int32? { pid > 0 ? threadGroup(of: pid) : nil }
    }

    /// Checks one request; returns `.drop`/`.short` for a write to act on,
    /// nil to pass it on, or throws the injected errno.
    @inline(__always)
    private func check(_ op: FaultOp, _ caller: Caller, node: NodeID, name: FileName? = nil,
                       offset: off_t = -1, length: Int64 = 0) throws(Errno) -> FaultAction? {
        stats[op].seen.add(1, ordering: .relaxed)
        guard engine.armedOps.contains(op) else { return nil }
        return try inject(op, caller, node: node, name: name, offset: offset, length: length)
    }

    @inline(never)
    private func inject(_ op: FaultOp, _ caller: Caller, node: NodeID, name: FileName?,
                        offset: off_t, length: Int64) throws(Errno) -> FaultAction? {
        let details = Details(tree: tree, paths: paths, node: node, name: name, pid: caller.pid)
        let info = RequestInfo(op: op, inode: name == nil ? tree.inodeNumber(of: node) : 0,
                               offset: Int64(offset), length: length, pid: caller.pid)
        let ticket = gate.ticket()  // before the decision: see StallGate
        guard let decision = engine.decide(info, details) else { return nil }
        let counters = stats[op]
        switch decision.action {
        case .fail(let errno):
            counters.failed.add(1, ordering: .relaxed)
            record(decision.ruleID, "fail", info, details, errno: errno)
            throw Errno(errno)
        case .delay(let nanoseconds):
            counters.delayed.add(1, ordering: .relaxed)
            record(decision.ruleID, "delay", info, details)
            sleepNanoseconds(nanoseconds)
            return nil
        case .stall(let timeout):
            counters.stalledNow.add(1, ordering: .relaxed)
            counters.stalledTotal.add(1, ordering: .relaxed)
            record(decision.ruleID, "stall", info, details)
            _ = gate.wait(ruleID: decision.ruleID, ticket: ticket, timeoutNanoseconds: timeout, session: session)
            counters.stalledNow.subtract(1, ordering: .relaxed)
            record(decision.ruleID, "release", info, details)
            return nil
        case .drop:
            counters.dropped.add(1, ordering: .relaxed)
            record(decision.ruleID, "drop", info, details)
            return decision.action
        case .short:
            counters.shortened.add(1, ordering: .relaxed)
            record(decision.ruleID, "short", info, details)
            return decision.action
        }
    }

    private func record(_ ruleID: String, _ action: String, _ info: RequestInfo, _ details: Details, errno: Int32 = 0) {
        appendEvent(InjectionEvent(
            timeNs: realtimeNanoseconds(), ruleID: ruleID, action: action, op: info.op, path: details.path(),
            inode: info.inode, offset: info.offset, length: info.length, errno: errno, pid: info.pid,
            comm: details.comm(), writeback: info.op == .writeback))
    }

    /// Capacity exhausted: ENOSPC, logged like an injection.
    private func noSpace(_ op: FaultOp, _ caller: Caller, node: NodeID, offset: off_t, length: Int64) -> Errno {
        stats[op].failed.add(1, ordering: .relaxed)
        let details = Details(tree: tree, paths: paths, node: node, name: nil, pid: caller.pid)
        let info = RequestInfo(op: op, inode: tree.inodeNumber(of: node), offset: Int64(offset), length: length, pid: caller.pid)
        record("capacity", "fail", info, details, errno: ENOSPC)
        return .ENOSPC
    }

    private func size(_ caller: Caller, _ node: NodeID, handle: UInt64?) -> Int64 {
        Int64((try? inner.getattr(caller, node: node, handle: handle).stat.st_size) ?? 0)
    }

    /// Size and link count of `name` (for freeing capacity), without keeping
    /// the lookup the inner file system counts.
    private func sizeIfLastLink(_ caller: Caller, parent: NodeID, name: FileName) -> Int64 {
        guard let entry = try? inner.lookup(caller, parent: parent, name: name), entry.node != 0 else { return 0 }
        inner.forget(node: entry.node, count: 1)
        let st = entry.attributes
        return (st.st_mode & S_IFMT) == S_IFREG && st.st_nlink == 1 ? Int64(st.st_size) : 0
    }

    @inline(__always) private func isControlName(_ parent: NodeID, _ name: FileName) -> Bool {
        parent == rootNodeID && controlName.withUnsafeBufferPointer { name.equals($0.baseAddress!) }
    }

    // MARK: lifecycle

    public func initialize(_ conn: inout Connection, session: SessionState) {
        self.session = session
        inner.initialize(&conn, session: session)
    }

    public func destroy() {
        gate.release(ruleID: nil)
        inner.destroy()
    }

    // MARK: names

    public func lookup(_ caller: Caller, parent: NodeID, name: FileName) throws(Errno) -> Entry {
        if isControlName(parent, name) { return controlEntry(.directory) }
        if parent == ControlNode.directory.rawValue {
            guard let file = ControlNode.file(named: name) else { throw .ENOENT }
            return controlEntry(file)
        }
        if ControlNode.of(parent) != nil { throw .ENOTDIR }
        return try inner.lookup(caller, parent: parent, name: name)
    }

    public func forget(node: NodeID, count: UInt64) {
        if ControlNode.of(node) != nil {
            if node & SnapshotNodes.tag != 0 { snapshots.forget(node) }  // each is answered once: count is 1
            return
        }
        paths.forget(node)  // its id may name another inode next
        inner.forget(node: node, count: count)
    }

    public func getattr(_ caller: Caller, node: NodeID, handle: UInt64?) throws(Errno) -> Attributes {
        if let c = ControlNode.of(node) { return Attributes(controlAttributes(c, node: node), timeout: 0) }
        return try inner.getattr(caller, node: node, handle: handle)
    }

    public func setattr(_ caller: Caller, node: NodeID, changes: AttributeChanges) throws(Errno) -> Attributes {
        if let c = ControlNode.of(node) {
            // Only the truncation of `echo > control` is accepted, and ignored.
            guard changes.fields.subtracting([.size, .atime, .mtime, .atimeNow, .mtimeNow, .ctime]).isEmpty else { throw .EPERM }
            return Attributes(controlAttributes(c, node: node), timeout: 0)
        }
        let resizes = changes.fields.contains(.size)
        _ = try check(resizes ? .truncate : .setattr, caller, node: node, offset: resizes ? changes.size : -1)
        guard resizes, capacity.isOn else { return try inner.setattr(caller, node: node, changes: changes) }
        let growth = Int64(changes.size) - size(caller, node, handle: changes.handle)
        guard capacity.reserve(growth) else { throw noSpace(.truncate, caller, node: node, offset: changes.size, length: 0) }
        do throws(Errno) {
            let result = try inner.setattr(caller, node: node, changes: changes)
            capacity.free(-growth)
            return result
        } catch {
            capacity.free(growth)
            throw error
        }
    }

    public func readlink(_ caller: Caller, node: NodeID) throws(Errno) -> [CChar] {
        if ControlNode.of(node) != nil { throw .EINVAL }
        return try inner.readlink(caller, node: node)
    }

    public func mknod(_ caller: Caller, parent: NodeID, name: FileName, mode: mode_t, device: dev_t) throws(Errno) -> Entry {
        try refuseInControl(parent, name)
        _ = try check(.mknod, caller, node: parent, name: name)
        return try inner.mknod(caller, parent: parent, name: name, mode: mode, device: device)
    }

    public func mkdir(_ caller: Caller, parent: NodeID, name: FileName, mode: mode_t) throws(Errno) -> Entry {
        try refuseInControl(parent, name)
        _ = try check(.mkdir, caller, node: parent, name: name)
        return try inner.mkdir(caller, parent: parent, name: name, mode: mode)
    }

    public func symlink(_ caller: Caller, target: FileName, parent: NodeID, name: FileName) throws(Errno) -> Entry {
        try refuseInControl(parent, name)
        _ = try check(.symlink, caller, node: parent, name: name)
        return try inner.symlink(caller, target: target, parent: parent, name: name)
    }

    public func link(_ caller: Caller, node: NodeID, newParent: NodeID, newName: FileName) throws(Errno) -> Entry {
        if ControlNode.of(node) != nil { throw .EPERM }
        try refuseInControl(newParent, newName)
        _ = try check(.link, caller, node: newParent, name: newName)
        return try inner.link(caller, node: node, newParent: newParent, newName: newName)
    }

    public func unlink(_ caller: Caller, parent: NodeID, name: FileName) throws(Errno) {
        try refuseInControl(parent, name, error: .EPERM)
        _ = try check(.unlink, caller, node: parent, name: name)
        let freed = capacity.isOn ? sizeIfLastLink(caller, parent: parent, name: name) : 0
        try inner.unlink(caller, parent: parent, name: name)
        capacity.free(freed)
        paths.forgetAll()
    }

    public func rmdir(_ caller: Caller, parent: NodeID, name: FileName) throws(Errno) {
        try refuseInControl(parent, name, error: .EPERM)
        _ = try check(.rmdir, caller, node: parent, name: name)
        try inner.rmdir(caller, parent: parent, name: name)
        paths.forgetAll()
    }

    public func rename(_ caller: Caller, parent: NodeID, name: FileName, newParent: NodeID, newName: FileName, flags: UInt32) throws(Errno) {
        try refuseInControl(parent, name, error: .EPERM)
        try refuseInControl(newParent, newName, error: .EPERM)
        _ = try check(.rename, caller, node: parent, name: name)
        let freed = capacity.isOn && flags == 0 ? sizeIfLastLink(caller, parent: newParent, name: newName) : 0
        try inner.rename(caller, parent: parent, name: name, newParent: newParent, newName: newName, flags: flags)
        capacity.free(freed)
        paths.forgetAll()
    }

    private func refuseInControl(_ parent: NodeID, _ name: FileName, error: Errno = .EEXIST) throws(Errno) {
        if ControlNode.of(parent) != nil { throw .EACCES }
        if isControlName(parent, name) { throw error }
    }

    // MARK: files

    public func open(_ caller: Caller, node: NodeID, flags: Int32) throws(Errno) -> OpenedFile {
        if let c = ControlNode.of(node) { return try openControl(c, caller, flags: flags) }
        _ = try check(.open, caller, node: node)
        // With atomic_o_trunc the open itself empties the file: what it held is free.
        guard capacity.isOn, flags & O_TRUNC != 0 else { return try inner.open(caller, node: node, flags: flags) }
        let freed = size(caller, node, handle: nil)
        let opened = try inner.open(caller, node: node, flags: flags)
        capacity.free(freed)
        return opened
    }

    public func create(_ caller: Caller, parent: NodeID, name: FileName, mode: mode_t, flags: Int32) throws(Errno) -> (Entry, OpenedFile) {
        try refuseInControl(parent, name)
        _ = try check(.create, caller, node: parent, name: name)
        return try inner.create(caller, parent: parent, name: name, mode: mode, flags: flags)
    }

    public func read(_ caller: Caller, node: NodeID, handle: UInt64, offset: off_t, size: Int) throws(Errno) -> ReadData {
        if let c = ControlNode.of(node) {
            switch c {
            case .events: return .bytes(events.read(offset: Int64(offset), count: size))
            case .control, .stats: return .bytes(snapshots.read(node, offset: offset, size: size))
            case .directory: throw .EISDIR
            }
        }
        _ = try check(.read, caller, node: node, offset: offset, length: Int64(size))
        return try inner.read(caller, node: node, handle: handle, offset: offset, size: size)
    }

    public func write(_ caller: Caller, node: NodeID, handle: UInt64, data: WriteSource, offset: off_t, fromWriteback: Bool) throws(Errno) -> Int {
        if ControlNode.of(node) != nil { return try writeControl(caller, node: node, data: data) }
        let op: FaultOp = fromWriteback ? .writeback : .syncwrite
        stats[op].seen.add(1, ordering: .relaxed)
        // The common case: one atomic load, one flag test.
        guard engine.armedOps.contains(op) || capacity.isOn else {
            return try inner.write(caller, node: node, handle: handle, data: data, offset: offset, fromWriteback: fromWriteback)
        }
        let count = data.count
        let action = engine.armedOps.contains(op)
            ? try inject(op, caller, node: node, name: nil, offset: offset, length: Int64(count)) : nil
        var stored = count
        switch action {
        case .drop?: return count  // acknowledged, never stored: a lost write
        case .short(let bytes)?: stored = Int(FaultAction.shortWriteLength(requested: Int64(count), bytes: bytes))
        default: break
        }
        var growth: Int64 = 0
        if capacity.isOn {
            growth = max(0, Int64(offset) + Int64(stored) - size(caller, node, handle: handle))
            guard capacity.reserve(growth) else { throw noSpace(op, caller, node: node, offset: offset, length: Int64(stored)) }
        }
        do throws(Errno) {
            if stored == count {
                return try inner.write(caller, node: node, handle: handle, data: data, offset: offset, fromWriteback: fromWriteback)
            }
            return try data.withPrefix(stored) { (prefix) throws(Errno) in
                try inner.write(caller, node: node, handle: handle, data: prefix, offset: offset, fromWriteback: fromWriteback)
            }
        } catch {
            capacity.free(growth)
            throw error
        }
    }

    public func flush(_ caller: Caller, node: NodeID, handle: UInt64) throws(Errno) {
        if ControlNode.of(node) != nil { return }
        _ = try check(.flush, caller, node: node)
        try inner.flush(caller, node: node, handle: handle)
    }

    public func release(_ caller: Caller, node: NodeID, handle: UInt64) {
        if ControlNode.of(node) != nil { return }
        inner.release(caller, node: node, handle: handle)
    }

    public func fsync(_ caller: Caller, node: NodeID, handle: UInt64, dataOnly: Bool) throws(Errno) {
        if ControlNode.of(node) != nil { return }
        _ = try check(dataOnly ? .fdatasync : .fsync, caller, node: node)
        try inner.fsync(caller, node: node, handle: handle, dataOnly: dataOnly)
    }

    public func fallocate(_ caller: Caller, node: NodeID, handle: UInt64, mode: Int32, offset: off_t, length: off_t) throws(Errno) {
        if ControlNode.of(node) != nil { throw .EPERM }
        _ = try check(.fallocate, caller, node: node, offset: offset, length: Int64(length))
        guard capacity.isOn, mode == 0 else {
            return try inner.fallocate(caller, node: node, handle: handle, mode: mode, offset: offset, length: length)
        }
        let growth = max(0, Int64(offset + length) - size(caller, node, handle: handle))
        guard capacity.reserve(growth) else { throw noSpace(.fallocate, caller, node: node, offset: offset, length: Int64(length)) }
        do throws(Errno) {
            try inner.fallocate(caller, node: node, handle: handle, mode: mode, offset: offset, length: length)
        } catch {
            capacity.free(growth)
            throw error
        }
    }

    public func copyFileRange(_ caller: Caller, from source: NodeID, sourceHandle: UInt64, sourceOffset: off_t,
                              to destination: NodeID, destinationHandle: UInt64, destinationOffset: off_t,
                              length: Int, flags: Int32) throws(Errno) -> Int {
        if ControlNode.of(source) != nil || ControlNode.of(destination) != nil { throw .EXDEV }
        _ = try check(.copyFileRange, caller, node: destination, offset: destinationOffset, length: Int64(length))
        var growth: Int64 = 0
        if capacity.isOn {
            growth = max(0, Int64(destinationOffset) + Int64(length) - size(caller, destination, handle: destinationHandle))
            guard capacity.reserve(growth) else {
                throw noSpace(.copyFileRange, caller, node: destination, offset: destinationOffset, length: Int64(length))
            }
        }
        do throws(Errno) {
            return try inner.copyFileRange(caller, from: source, sourceHandle: sourceHandle, sourceOffset: sourceOffset,
                                           to: destination, destinationHandle: destinationHandle,
                                           destinationOffset: destinationOffset, length: length, flags: flags)
        } catch {
            capacity.free(growth)
            throw error
        }
    }

    public func lseek(_ caller: Caller, node: NodeID, handle: UInt64, offset: off_t, whence: Int32) throws(Errno) -> off_t {
        if ControlNode.of(node) != nil { throw Errno(ENXIO) }
        return try inner.lseek(caller, node: node, handle: handle, offset: offset, whence: whence)
    }

    // MARK: directories

    public func opendir(_ caller: Caller, node: NodeID, flags: Int32) throws(Errno) -> OpenedFile {
        if let c = ControlNode.of(node) {
            guard c == .directory else { throw .ENOTDIR }
            return OpenedFile(handle: 0)
        }
        return try inner.opendir(caller, node: node, flags: flags)
    }

    public func readdir(_ caller: Caller, node: NodeID, handle: UInt64, offset: off_t, plus: Bool, into buffer: inout DirectoryBuffer) throws(Errno) {
        guard node == ControlNode.directory.rawValue else {
            return try inner.readdir(caller, node: node, handle: handle, offset: offset, plus: plus, into: &buffer)
        }
        let listing: [(String, ControlNode?)] = [(".", .directory), ("..", nil), ("control", .control), ("stats", .stats), ("events", .events)]
        for (index, (name, c)) in listing.enumerated() where index >= offset {
            var st = c.map { $0.attributes(owner: options.owner, group: options.group, size: 0) }
                ?? ControlNode.directory.attributes(owner: 0, group: 0, size: 0)
            if c == nil { st.st_ino = 1 }
            let added = name.withCString { (n) -> Bool in
                if !plus { return buffer.add(n, attributes: st, nextOffset: off_t(index + 1)) }
                let isFile = index >= 2
                let entry = isFile ? controlEntry(c!) : Entry(node: 0, attributes: st, attributesTimeout: 0, entryTimeout: 0)
                let added = buffer.addPlus(n, entry: entry, nextOffset: off_t(index + 1))
                if !added && entry.node & SnapshotNodes.tag != 0 { snapshots.forget(entry.node) }  // never answered
                return added
            }
            if !added { return }
        }
    }

    public func releasedir(_ caller: Caller, node: NodeID, handle: UInt64) {
        if ControlNode.of(node) != nil { return }
        inner.releasedir(caller, node: node, handle: handle)
    }

    public func fsyncdir(_ caller: Caller, node: NodeID, handle: UInt64, dataOnly: Bool) throws(Errno) {
        if ControlNode.of(node) != nil { return }
        _ = try check(.fsyncdir, caller, node: node)
        try inner.fsyncdir(caller, node: node, handle: handle, dataOnly: dataOnly)
    }

    // MARK: the rest

    public func statfs(_ caller: Caller, node: NodeID) throws(Errno) -> statvfs {
        var st = try inner.statfs(caller, node: ControlNode.of(node) != nil ? rootNodeID : node)
        if let limit = capacity.limitBytes {
            let unit = UInt64(max(st.f_frsize, 1))
            let free = UInt64(max(0, limit - capacity.usedBytes))
            st.f_blocks = fsblkcnt_t(UInt64(limit) / unit)
            st.f_bfree = fsblkcnt_t(free / unit)
            st.f_bavail = st.f_bfree
        }
        return st
    }

    public func access(_ caller: Caller, node: NodeID, mask: Int32) throws(Errno) {
        if ControlNode.of(node) != nil { return }
        try inner.access(caller, node: node, mask: mask)
    }

    public func setxattr(_ caller: Caller, node: NodeID, name: FileName, value: UnsafeRawBufferPointer, flags: Int32) throws(Errno) {
        if ControlNode.of(node) != nil { throw .EPERM }
        _ = try check(.setxattr, caller, node: node)
        try inner.setxattr(caller, node: node, name: name, value: value, flags: flags)
    }

    public func getxattr(_ caller: Caller, node: NodeID, name: FileName, size: Int) throws(Errno) -> XattrReply {
        if ControlNode.of(node) != nil { throw .ENODATA }
        return try inner.getxattr(caller, node: node, name: name, size: size)
    }

    public func listxattr(_ caller: Caller, node: NodeID, size: Int) throws(Errno) -> XattrReply {
        if ControlNode.of(node) != nil { return .size(0) }
        return try inner.listxattr(caller, node: node, size: size)
    }

    public func removexattr(_ caller: Caller, node: NodeID, name: FileName) throws(Errno) {
        if ControlNode.of(node) != nil { throw .EPERM }
        try inner.removexattr(caller, node: node, name: name)
    }

    // MARK: the control files

    private func controlAttributes(_ c: ControlNode, node: NodeID) -> stat {
        let size: Int64 = switch c {
        case .events: events.size
        case .control, .stats: Int64(snapshots.size(of: node))
        case .directory: 0
        }
        return c.attributes(owner: options.owner, group: options.group, size: size)
    }

    /// The entry a lookup answers: `control` and `stats` get a new node with
    /// the text taken now (see `SnapshotNodes`).
    private func controlEntry(_ c: ControlNode) -> Entry {
        var node = c.rawValue
        var size: Int64 = c == .events ? events.size : 0
        switch c {
        case .control: (node, size) = snapshotNode(.control, controlText())
        case .stats: (node, size) = snapshotNode(.stats, stats.render())
        case .events, .directory: break
        }
        return Entry(node: node, attributes: c.attributes(owner: options.owner, group: options.group, size: size),
                     attributesTimeout: 0, entryTimeout: 0)
    }

    private func snapshotNode(_ c: ControlNode, _ text: String) -> (NodeID, Int64) {
        let made = snapshots.make(c, text: text)
        return (made.node, Int64(made.size))
    }

    private func mayWriteControl(_ caller: Caller) -> Bool { caller.uid == 0 || caller.uid == options.owner }

    private func openControl(_ c: ControlNode, _ caller: Caller, flags: Int32) throws(Errno) -> OpenedFile {
        let writing = flags & O_ACCMODE != O_RDONLY
        if writing && (c != .control || !mayWriteControl(caller)) { throw .EACCES }
        if c == .directory { throw .EISDIR }
        // The node's text (control, stats) or the log (events) is read as is,
        // never from the page cache.
        var opened = OpenedFile(handle: 0)
        opened.directIO = true
        return opened
    }

    private func writeControl(_ caller: Caller, node: NodeID, data: WriteSource) throws(Errno) -> Int {
        guard ControlNode.of(node) == .control, mayWriteControl(caller) else { throw .EACCES }
        let bytes = try data.bytes()
        switch applyControl(String(decoding: bytes, as: UTF8.self)) {
        case .success: return bytes.count
        case .failure: throw .EINVAL
        }
    }
}

/// /proc/PID/comm without its newline; nil when the process is gone.
func processName(_ pid: pid_t) -> String? {
    guard let text = readProcFile("/proc/\(pid)/comm") else { return nil }
    return text.hasSuffix("\n") ? String(text.dropLast()) : text
}

/// The process a thread belongs to (Tgid in /proc/TID/status).
func threadGroup(of tid: pid_t) -> pid_t? {
    guard let text = readProcFile("/proc/\(tid)/status"),
          let line = text.split(separator: "\n").first(where: { $0.hasPrefix("Tgid:") }) else { return nil }
    return pid_t(String(line.dropFirst(5).filter { $0 != " " && $0 != "\t" }))
}

/// The first 4 KiB of a /proc file; nil when it cannot be read.
private func readProcFile(_ path: String) -> String? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var buf = [UInt8](repeating: 0, count: 4096)
    let n = read(fd, &buf, buf.count)
    return n > 0 ? String(decoding: buf[0..<n], as: UTF8.self) : nil
}
