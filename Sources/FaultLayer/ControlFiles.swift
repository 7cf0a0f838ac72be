import FaultRules
import FuseKit
import Glibc
import System
import Synchronization

/// The kinds of node in the virtual `.faultfs` directory. The raw value is
/// the `st_ino` that stat shows; node ids are `ControlFiles`' business.
enum ControlNode: UInt64, CaseIterable {
    case directory = 2
    case control = 3
    case stats = 4
    case events = 5
    case status = 6

    /// The files, in listing order.
    static let files: [ControlNode] = [.control, .stats, .events, .status]

    static func file(named name: FileName) -> ControlNode? {
        files.first { name.equals($0.fileName) }
    }

    var fileName: String {
        switch self {
        case .directory: "."
        case .control: "control"
        case .stats: "stats"
        case .events: "events"
        case .status: "status"
        }
    }

    /// Everyone may read; only the owner (the mounting user) may write
    /// `control`. The kernel enforces it (default_permissions); `write`
    /// checks again.
    func attributes(owner: uid_t, group: gid_t, size: Int64) -> stat {
        var st = stat()
        st.st_ino = ino_t(rawValue)
        st.st_uid = owner
        st.st_gid = group
        st.st_nlink = self == .directory ? 2 : 1
        st.st_mode = switch self {
        case .directory: S_IFDIR | 0o755
        case .control: S_IFREG | 0o644
        case .stats, .events, .status: S_IFREG | 0o444
        }
        st.st_size = off_t(size)
        st.st_blksize = 4096
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        st.st_atim = now; st.st_mtim = now; st.st_ctim = now
        return st
    }
}

/// The `.faultfs` directory at the mount root, decorating the file system
/// below it: `control` (read the rules, write commands), `stats`, `events`
/// and `status`. Requests for other nodes pass on untouched.
///
/// Its node ids come from the range the inner file system promises never
/// to use (`FileSystem.unusedNodeIDs`): the directory is the range's first
/// id, `events` the next, and the snapshot nodes of `control`, `stats` and
/// `status` follow (see `SnapshotNodes`).
final class ControlFiles: FileSystem, @unchecked Sendable {
    let inner: any FileSystem
    private let options: FaultLayerOptions
    private let engine: RuleEngine
    private let recorder: InjectionRecorder
    private let gate: StallGate
    private let capacity: CapacityLimit
    private let crashes: CrashControl
    let snapshots: SnapshotNodes
    /// The node ids this layer answers: [first, last].
    let firstNode: NodeID
    private let lastNode: NodeID
    var directoryNode: NodeID { firstNode }
    var eventsNode: NodeID { firstNode + 1 }
    private let lastError = Mutex<String?>(nil)
    private let controlName: ContiguousArray<CChar>

    /// How many node ids the layer needs at least (snapshot ids are reused
    /// after that many lookups).
    static let nodeIDsNeeded: UInt64 = 1 << 32

    init(wrapping inner: any FileSystem, options: FaultLayerOptions, engine: RuleEngine, recorder: InjectionRecorder,
         gate: StallGate, capacity: CapacityLimit, crashes: CrashControl) throws(Errno) {
        guard let free = inner.unusedNodeIDs, free.upperBound - free.lowerBound >= Self.nodeIDsNeeded - 1,
              free.lowerBound > rootNodeID else { throw .EINVAL }
        self.inner = inner
        self.options = options
        self.engine = engine
        self.recorder = recorder
        self.gate = gate
        self.capacity = capacity
        self.crashes = crashes
        firstNode = free.lowerBound
        lastNode = free.upperBound
        snapshots = SnapshotNodes(first: free.lowerBound + 2, count: free.upperBound - free.lowerBound - 1)
        controlName = ContiguousArray(options.controlName.utf8CString)
    }

    /// What `node` is, if it is one of ours. One subtraction and compare.
    @inline(__always) func kind(of node: NodeID) -> ControlNode? {
        guard node &- firstNode <= lastNode - firstNode else { return nil }
        switch node {
        case directoryNode: return .directory
        case eventsNode: return .events
        default: return snapshots.kind(of: node)
        }
    }

    var unusedNodeIDs: ClosedRange<NodeID>? { nil }  // all taken here

    // MARK: steering

    /// Applies control text (a write to `control`, or `-o rules=FILE`), all
    /// or nothing.
    func applyControl(_ text: String) -> Result<Void, ParseError> {
        applyControl(text, crashAllowed: false).mapError(\.error)
    }

    /// A refused control text: the error shown, and the errno of the write.
    struct Refusal: Error {
        let error: ParseError
        let errno: Errno
    }

    /// `crashAllowed`: a write to `control` of the mounted file system (not
    /// a rules file read before mounting).
    func applyControl(_ text: String, crashAllowed: Bool) -> Result<Void, Refusal> {
        // A `crash` is checked before anything is applied (all or nothing).
        var crashLine: Int?
        if let crash = firstCrash(in: text) {
            let refusal: (message: String, errno: Errno)? = crashAllowed
                ? crashes.begin() : ("crash: only a write to the control file of a mounted file system crashes it", .EINVAL)
            if let refusal {
                let error = ParseError(line: crash.line, column: crash.column, message: refusal.message)
                lastError.withLock { $0 = error.shownText }
                return .failure(Refusal(error: error, errno: refusal.errno))
            }
            crashLine = crash.line
        }
        switch engine.apply(text: text) {
        case .failure(let error):
            if crashLine != nil { crashes.cancel() }
            lastError.withLock { $0 = error.shownText }
            return .failure(Refusal(error: error, errno: .EINVAL))
        case .success(let commands):
            lastError.withLock { $0 = nil }
            for command in commands { carryOut(command) }
            options.afterControlApplied?()
            return .success(())
        }
    }

    private func carryOut(_ command: ControlCommand) {
        switch command {
        case .release(let id):
            gate.release(ruleID: id)
        case .capacity(let bytes):
            capacity.set(limit: bytes, wait: options.capacityMeasureWaitNanoseconds)
            recorder.append(InjectionEvent(timeNs: SystemClock.realtimeNanoseconds(), ruleID: "-", action: .capacity,
                                           op: .syncwrite, length: bytes ?? -1))
        case .resetCounters:
            recorder.stats.reset()
        case .crash(let request):
            crashes.start(request)  // accepted by `begin` before the text was applied
        case .add, .clear:
            break
        }
    }

    // MARK: the texts

    /// What reading `control` shows: the rules with their counters, the
    /// capacity model, and the last refused command.
    func controlText() -> String {
        var text = options.controlFacts.map { $0().map { $0 + "\n" }.joined() } ?? ""
        text += "# faultfs rules, in order (the first that matches acts); write a command to change them\n"
        text += engine.renderRules()
        switch capacity.state {
        case .off: break
        case .measuring(let limit):
            text += "# capacity \(limit) bytes, measuring the bytes used (not enforced until measured; see status)\n"
        case .ready(let limit, let used):
            text += "# capacity \(limit) bytes, used \(used) bytes (kept by clear; 'capacity off' removes it)\n"
        }
        if let error = lastError.withLock({ $0 }) { text += "# error: \(error)\n" }
        return text
    }

    /// What reading `status` shows: who serves the mount, one JSON line.
    func statusText() -> String {
        MountStatus(version: options.version, commit: options.commit, pid: getpid(), mountPoint: options.mountPoint, source: options.source,
                    options: options.mountOptions, writebackCache: options.writebackCache,
                    armedRules: engine.armedRuleCount, capacity: capacity.state, crashSimulation: crashes.state,
                    crashes: crashes.record.withLock { $0.count }, lastCrash: crashes.record.withLock { $0.last }).encoded()
    }

    private func text(of file: ControlNode) -> String {
        switch file {
        case .control: controlText()
        case .stats: recorder.stats.render()
        case .status: statusText()
        case .events, .directory: ""
        }
    }

    // MARK: nodes

    private func attributes(_ c: ControlNode, node: NodeID) -> stat {
        let size: Int64 = switch c {
        case .events: recorder.events.size
        case .control, .stats, .status: Int64(snapshots.size(of: node))
        case .directory: 0
        }
        return c.attributes(owner: options.owner, group: options.group, size: size)
    }

    /// The entry a lookup answers: `control`, `stats` and `status` get a new
    /// node with the text taken now (see `SnapshotNodes`).
    private func entry(_ c: ControlNode) -> Entry {
        var node = c == .directory ? directoryNode : eventsNode
        var size: Int64 = c == .events ? recorder.events.size : 0
        if c != .directory && c != .events {
            let made = snapshots.make(c, text: text(of: c))
            (node, size) = (made.node, Int64(made.size))
        }
        return Entry(node: node, attributes: c.attributes(owner: options.owner, group: options.group, size: size),
                     attributesTimeout: 0, entryTimeout: 0)
    }

    @inline(__always) private func isControlName(_ parent: NodeID, _ name: FileName) -> Bool {
        parent == rootNodeID && controlName.withUnsafeBufferPointer { name.equals($0.baseAddress!) }
    }

    private func refuseInControl(_ parent: NodeID, _ name: FileName, error: Errno = .EEXIST) throws(Errno) {
        if kind(of: parent) != nil { throw .EACCES }
        if isControlName(parent, name) { throw error }
    }

    private func mayWriteControl(_ caller: Caller) -> Bool { caller.uid == 0 || caller.uid == options.owner }

    // MARK: lifecycle

    func initialize(_ conn: inout Connection, session: SessionState) {
        recorder.announceEvents(as: eventsNode, session: session)
        inner.initialize(&conn, session: session)
    }

    /// The session ended (an unmount, or a crash's aborted connection, after
    /// which the kernel forgets nothing): the snapshot texts go too.
    func destroy() {
        snapshots.forgetAll()
        inner.destroy()
    }

    // MARK: names

    func lookup(_ caller: Caller, parent: NodeID, name: FileName) throws(Errno) -> Entry {
        if isControlName(parent, name) { return entry(.directory) }
        if parent == directoryNode {
            guard let file = ControlNode.file(named: name) else { throw .ENOENT }
            return entry(file)
        }
        if kind(of: parent) != nil { throw .ENOTDIR }
        return try inner.lookup(caller, parent: parent, name: name)
    }

    func forget(node: NodeID, count: UInt64) {
        guard let c = kind(of: node) else { return inner.forget(node: node, count: count) }
        if c != .directory && c != .events { snapshots.forget(node) }  // each is answered once: count is 1
    }

    func getattr(_ caller: Caller, node: NodeID, handle: UInt64?) throws(Errno) -> Attributes {
        if let c = kind(of: node) { return Attributes(attributes(c, node: node), timeout: 0) }
        return try inner.getattr(caller, node: node, handle: handle)
    }

    func setattr(_ caller: Caller, node: NodeID, changes: AttributeChanges) throws(Errno) -> Attributes {
        if let c = kind(of: node) {
            // Only the truncation of `echo > control` is accepted, and ignored.
            guard changes.fields.subtracting([.size, .atime, .mtime, .atimeNow, .mtimeNow, .ctime]).isEmpty else { throw .EPERM }
            return Attributes(attributes(c, node: node), timeout: 0)
        }
        return try inner.setattr(caller, node: node, changes: changes)
    }

    func readlink(_ caller: Caller, node: NodeID) throws(Errno) -> [CChar] {
        if kind(of: node) != nil { throw .EINVAL }
        return try inner.readlink(caller, node: node)
    }

    func mknod(_ caller: Caller, parent: NodeID, name: FileName, mode: mode_t, device: dev_t) throws(Errno) -> Entry {
        try refuseInControl(parent, name)
        return try inner.mknod(caller, parent: parent, name: name, mode: mode, device: device)
    }

    func mkdir(_ caller: Caller, parent: NodeID, name: FileName, mode: mode_t) throws(Errno) -> Entry {
        try refuseInControl(parent, name)
        return try inner.mkdir(caller, parent: parent, name: name, mode: mode)
    }

    func symlink(_ caller: Caller, target: FileName, parent: NodeID, name: FileName) throws(Errno) -> Entry {
        try refuseInControl(parent, name)
        return try inner.symlink(caller, target: target, parent: parent, name: name)
    }

    func link(_ caller: Caller, node: NodeID, newParent: NodeID, newName: FileName) throws(Errno) -> Entry {
        if kind(of: node) != nil { throw .EPERM }
        try refuseInControl(newParent, newName)
        return try inner.link(caller, node: node, newParent: newParent, newName: newName)
    }

    func unlink(_ caller: Caller, parent: NodeID, name: FileName) throws(Errno) {
        try refuseInControl(parent, name, error: .EPERM)
        try inner.unlink(caller, parent: parent, name: name)
    }

    func rmdir(_ caller: Caller, parent: NodeID, name: FileName) throws(Errno) {
        try refuseInControl(parent, name, error: .EPERM)
        try inner.rmdir(caller, parent: parent, name: name)
    }

    func rename(_ caller: Caller, parent: NodeID, name: FileName, newParent: NodeID, newName: FileName, flags: UInt32) throws(Errno) {
        try refuseInControl(parent, name, error: .EPERM)
        try refuseInControl(newParent, newName, error: .EPERM)
        try inner.rename(caller, parent: parent, name: name, newParent: newParent, newName: newName, flags: flags)
    }

    // MARK: files

    func open(_ caller: Caller, node: NodeID, flags: Int32) throws(Errno) -> OpenedFile {
        guard let c = kind(of: node) else { return try inner.open(caller, node: node, flags: flags) }
        let writing = flags & O_ACCMODE != O_RDONLY
        if writing && (c != .control || !mayWriteControl(caller)) { throw .EACCES }
        if c == .directory { throw .EISDIR }
        // The node's text (control, stats, status) or the log (events) is
        // read as is, never from the page cache.
        var opened = OpenedFile(handle: 0)
        opened.directIO = true
        return opened
    }

    func create(_ caller: Caller, parent: NodeID, name: FileName, mode: mode_t, flags: Int32) throws(Errno) -> (Entry, OpenedFile) {
        try refuseInControl(parent, name)
        return try inner.create(caller, parent: parent, name: name, mode: mode, flags: flags)
    }

    func read(_ caller: Caller, node: NodeID, handle: UInt64, offset: off_t, size: Int) throws(Errno) -> ReadData {
        guard let c = kind(of: node) else { return try inner.read(caller, node: node, handle: handle, offset: offset, size: size) }
        switch c {
        case .events: return .bytes(recorder.events.read(offset: Int64(offset), count: size))
        case .control, .stats, .status: return .bytes(snapshots.read(node, offset: offset, size: size))
        case .directory: throw .EISDIR
        }
    }

    func write(_ caller: Caller, node: NodeID, handle: UInt64, data: WriteSource, offset: off_t, fromWriteback: Bool) throws(Errno) -> Int {
        guard let c = kind(of: node) else {
            return try inner.write(caller, node: node, handle: handle, data: data, offset: offset, fromWriteback: fromWriteback)
        }
        guard c == .control, mayWriteControl(caller) else { throw .EACCES }
        let bytes = try data.bytes()
        switch applyControl(String(decoding: bytes, as: UTF8.self), crashAllowed: true) {
        case .success: return bytes.count
        case .failure(let refusal): throw refusal.errno
        }
    }

    func flush(_ caller: Caller, node: NodeID, handle: UInt64) throws(Errno) {
        if kind(of: node) != nil { return }
        try inner.flush(caller, node: node, handle: handle)
    }

    func release(_ caller: Caller, node: NodeID, handle: UInt64) {
        if let c = kind(of: node) {
            // After close(2) returned (the kernel sends RELEASE without waiting).
            if c == .control { crashes.noteControlClosed() }
            return
        }
        inner.release(caller, node: node, handle: handle)
    }

    func fsync(_ caller: Caller, node: NodeID, handle: UInt64, dataOnly: Bool) throws(Errno) {
        if kind(of: node) != nil { return }
        try inner.fsync(caller, node: node, handle: handle, dataOnly: dataOnly)
    }

    func fallocate(_ caller: Caller, node: NodeID, handle: UInt64, mode: Int32, offset: off_t, length: off_t) throws(Errno) {
        if kind(of: node) != nil { throw .EPERM }
        try inner.fallocate(caller, node: node, handle: handle, mode: mode, offset: offset, length: length)
    }

    func copyFileRange(_ caller: Caller, from source: NodeID, sourceHandle: UInt64, sourceOffset: off_t,
                       to destination: NodeID, destinationHandle: UInt64, destinationOffset: off_t,
                       length: Int, flags: Int32) throws(Errno) -> Int {
        if kind(of: source) != nil || kind(of: destination) != nil { throw .EXDEV }
        return try inner.copyFileRange(caller, from: source, sourceHandle: sourceHandle, sourceOffset: sourceOffset,
                                       to: destination, destinationHandle: destinationHandle,
                                       destinationOffset: destinationOffset, length: length, flags: flags)
    }

    func lseek(_ caller: Caller, node: NodeID, handle: UInt64, offset: off_t, whence: Int32) throws(Errno) -> off_t {
        if kind(of: node) != nil { throw Errno(ENXIO) }
        return try inner.lseek(caller, node: node, handle: handle, offset: offset, whence: whence)
    }

    // MARK: directories

    func opendir(_ caller: Caller, node: NodeID, flags: Int32) throws(Errno) -> OpenedFile {
        guard let c = kind(of: node) else { return try inner.opendir(caller, node: node, flags: flags) }
        guard c == .directory else { throw .ENOTDIR }
        return OpenedFile(handle: 0)
    }

    func readdir(_ caller: Caller, node: NodeID, handle: UInt64, offset: off_t, plus: Bool, into buffer: inout DirectoryBuffer) throws(Errno) {
        guard node == directoryNode else {
            return try inner.readdir(caller, node: node, handle: handle, offset: offset, plus: plus, into: &buffer)
        }
        let listing: [(String, ControlNode?)] = [(".", .directory), ("..", nil)] + ControlNode.files.map { ($0.fileName, $0) }
        for (index, (name, c)) in listing.enumerated() where index >= offset {
            var st = c.map { $0.attributes(owner: options.owner, group: options.group, size: 0) }
                ?? ControlNode.directory.attributes(owner: 0, group: 0, size: 0)
            if c == nil { st.st_ino = 1 }
            let added = name.withCString { (n) -> Bool in
                if !plus { return buffer.add(n, attributes: st, nextOffset: off_t(index + 1)) }
                let isFile = index >= 2
                let entry = isFile ? entry(c!) : Entry(node: 0, attributes: st, attributesTimeout: 0, entryTimeout: 0)
                let added = buffer.addPlus(n, entry: entry, nextOffset: off_t(index + 1))
                if !added && snapshots.kind(of: entry.node) != nil { snapshots.forget(entry.node) }  // never answered
                return added
            }
            if !added { return }
        }
    }

    func releasedir(_ caller: Caller, node: NodeID, handle: UInt64) {
        if kind(of: node) != nil { return }
        inner.releasedir(caller, node: node, handle: handle)
    }

    func fsyncdir(_ caller: Caller, node: NodeID, handle: UInt64, dataOnly: Bool) throws(Errno) {
        if kind(of: node) != nil { return }
        try inner.fsyncdir(caller, node: node, handle: handle, dataOnly: dataOnly)
    }

    // MARK: the rest

    func statfs(_ caller: Caller, node: NodeID) throws(Errno) -> statvfs {
        try inner.statfs(caller, node: kind(of: node) != nil ? rootNodeID : node)
    }

    func access(_ caller: Caller, node: NodeID, mask: Int32) throws(Errno) {
        if kind(of: node) != nil { return }
        try inner.access(caller, node: node, mask: mask)
    }

    func setxattr(_ caller: Caller, node: NodeID, name: FileName, value: UnsafeRawBufferPointer, flags: Int32) throws(Errno) {
        if kind(of: node) != nil { throw .EPERM }
        try inner.setxattr(caller, node: node, name: name, value: value, flags: flags)
    }

    func getxattr(_ caller: Caller, node: NodeID, name: FileName, size: Int) throws(Errno) -> XattrReply {
        if kind(of: node) != nil { throw .ENODATA }
        return try inner.getxattr(caller, node: node, name: name, size: size)
    }

    func listxattr(_ caller: Caller, node: NodeID, size: Int) throws(Errno) -> XattrReply {
        if kind(of: node) != nil { return .size(0) }
        return try inner.listxattr(caller, node: node, size: size)
    }

    func removexattr(_ caller: Caller, node: NodeID, name: FileName) throws(Errno) {
        if kind(of: node) != nil { throw .EPERM }
        try inner.removexattr(caller, node: node, name: name)
    }
}

/// The texts of `control`, `stats` and `status`, one per node id.
///
/// With the writeback cache the kernel keeps a regular file's size itself:
/// it takes the size from the reply that creates the inode and then ignores
/// the size in later replies (a write through the cache may have grown it).
/// A file whose text changes under one node id would keep a stale size, and
/// `tail`, `head -c` or a reader that trusts fstat would cut it. So every
/// lookup of these files renders the text and answers a new node id whose
/// size is that text's length; every open of that node reads that text. The
/// kernel forgets the node when no dentry or open file uses it (FUSE drops
/// unused inodes at once), and the text goes with it.
///
/// Node ids: `first + 4 * serial + k`, k the file's place in `kinds`.
final class SnapshotNodes: Sendable {
    private static let kinds: [ControlNode] = [.control, .stats, .status]
    private let first: NodeID
    private let slots: UInt64
    private struct Table {
        var serial: UInt64 = 0
        var texts: [NodeID: [UInt8]] = [:]
    }
    private let table = Mutex(Table())

    /// Uses the `count` node ids from `first` on.
    init(first: NodeID, count: UInt64) {
        self.first = first
        slots = count / 4
    }

    /// The kind of a snapshot node id, nil if it is none.
    func kind(of node: NodeID) -> ControlNode? {
        let offset = node &- first
        guard offset / 4 < slots else { return nil }
        let k = Int(offset % 4)
        return k < Self.kinds.count ? Self.kinds[k] : nil
    }

    func make(_ file: ControlNode, text: String) -> (node: NodeID, size: Int) {
        let bytes = Array(text.utf8)
        let k = NodeID(Self.kinds.firstIndex(of: file)!)
        let node = table.withLock { t in
            var node: NodeID
            repeat {  // after `slots` lookups the serials wrap: skip those still in use
                t.serial = (t.serial + 1) % slots
                node = first + 4 * t.serial + k
            } while t.texts[node] != nil
            t.texts[node] = bytes
            return node
        }
        return (node, bytes.count)
    }

    func size(of node: NodeID) -> Int { table.withLock { $0.texts[node]?.count ?? 0 } }

    func read(_ node: NodeID, offset: off_t, size: Int) -> [UInt8] {
        table.withLock { t in
            guard let bytes = t.texts[node], offset >= 0, offset < bytes.count else { return [] }
            let start = Int(offset)
            return Array(bytes[start..<min(bytes.count, start + size)])
        }
    }

    func forget(_ node: NodeID) { table.withLock { _ = $0.texts.removeValue(forKey: node) } }

    func forgetAll() { table.withLock { $0.texts = [:] } }

    /// Texts still remembered (for tests of forgetting).
    var count: Int { table.withLock { $0.texts.count } }
}
