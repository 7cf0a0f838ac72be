import FaultLayer
import FuseKit
import Glibc
import Synchronization

/// A small file system in memory: the inner file system the fault layer
/// decorates in these tests. It keeps files, directories and symlinks in a
/// table of nodes and records every request it receives, so a test sees
/// what the fault layer passed on (and what it kept back).
///
/// Node ids start at 100 and stay far below `unusedNodeIDs`, which the
/// fault layer's control files ask for.
final class MemoryFileSystem: FileSystem, BackingTree, Sendable {
    struct Node {
        var mode: mode_t
        var data: [UInt8] = []
        var children: [String: NodeID] = [:]   // directories only
        var parent: NodeID
        var name: String
        var links: nlink_t = 1
        var target = ""                        // symlinks only
        var xattrs: [String: [UInt8]] = [:]
        var isDirectory: Bool { mode & S_IFMT == S_IFDIR }
    }

    private struct State {
        var nodes: [NodeID: Node] = [rootNodeID: Node(mode: S_IFDIR | 0o755, parent: rootNodeID, name: "")]
        var nextNode: NodeID = 100
        var nextHandle: UInt64 = 1
        var calls: [String] = []
    }
    private let state = Mutex(State())
    private let pathHook = Mutex<(@Sendable () -> Void)?>(nil)
    private let pathQueries = Atomic<Int>(0)

    /// How often the fault layer asked for a path (it caches them).
    var pathsAsked: Int { pathQueries.load(ordering: .relaxed) }

    /// Runs `hook` once, the next time the fault layer asks for a path.
    func onNextPath(_ hook: @escaping @Sendable () -> Void) { pathHook.withLock { $0 = hook } }

    /// Every request received, in order: the op's name and its node
    /// (`write 100`), for the data ops also the offset and length
    /// (`write 100 @0+5`).
    var calls: [String] { state.withLock { $0.calls } }
    func clearCalls() { state.withLock { $0.calls.removeAll() } }
    /// The calls whose first word is `op`.
    func calls(_ op: String) -> [String] { calls.filter { $0.split(separator: " ").first.map(String.init) == op } }

    /// The bytes of a file.
    func contents(of node: NodeID) -> [UInt8] { state.withLock { $0.nodes[node]?.data ?? [] } }

    // MARK: BackingTree

    func path(of node: NodeID) -> String? {
        pathQueries.add(1, ordering: .relaxed)
        if let hook = pathHook.withLock({ h in defer { h = nil }; return h }) { hook() }
        return state.withLock { s in
            var names: [String] = []
            var current = node
            while current != rootNodeID {
                guard let n = s.nodes[current] else { return nil }
                names.append(n.name)
                current = n.parent
            }
            return names.reversed().joined(separator: "/")
        }
    }

    func inodeNumber(of node: NodeID) -> UInt64 { node }

    /// Not the passthrough's top half: a test sees the layer asks.
    static let freeNodeIDs: ClosedRange<NodeID> = (1 << 40)...(1 << 41)
    var unusedNodeIDs: ClosedRange<NodeID>? { Self.freeNodeIDs }

    private let measuringHeld = Atomic<Bool>(false)
    private let measurements = Atomic<Int>(0)
    /// Makes `usedBytes` wait until `releaseMeasuring` (a slow tree walk).
    func holdMeasuring() { measuringHeld.store(true, ordering: .relaxed) }
    func releaseMeasuring() { measuringHeld.store(false, ordering: .relaxed) }
    private let measurementsStarted = Atomic<Int>(0)
    /// How often `usedBytes` returned, and how often it was asked.
    var measured: Int { measurements.load(ordering: .relaxed) }
    var measuringStarted: Int { measurementsStarted.load(ordering: .relaxed) }

    func usedBytes() -> Int64 {
        // What the tree holds when asked; the walk may then take a while.
        measurementsStarted.add(1, ordering: .relaxed)
        let total = state.withLock { s in s.nodes.values.reduce(0) { $0 + ($1.mode & S_IFMT == S_IFREG ? Int64($1.data.count) : 0) } }
        while measuringHeld.load(ordering: .relaxed) { usleep(1_000) }
        measurements.add(1, ordering: .relaxed)
        return total
    }

    // MARK: helpers

    private func record(_ s: inout State, _ text: String) { s.calls.append(text) }

    private func attributes(_ node: NodeID, _ n: Node) -> stat {
        var st = stat()
        st.st_ino = ino_t(node)
        st.st_mode = n.mode
        st.st_nlink = n.links
        st.st_size = off_t(n.isDirectory ? 4096 : n.mode & S_IFMT == S_IFLNK ? n.target.utf8.count : n.data.count)
        st.st_blksize = 4096
        return st
    }

    private func entry(_ node: NodeID, _ n: Node) -> Entry {
        Entry(node: node, attributes: attributes(node, n), attributesTimeout: 0, entryTimeout: 0)
    }

    private func node(_ s: State, _ node: NodeID) throws(Errno) -> Node {
        guard let n = s.nodes[node] else { throw .ESTALE }
        return n
    }

    /// Adds `name` under `parent`; EEXIST if taken.
    private func add(_ s: inout State, parent: NodeID, name: String, mode: mode_t, target: String = "") throws(Errno) -> NodeID {
        guard var dir = s.nodes[parent], dir.isDirectory else { throw .ENOTDIR }
        guard dir.children[name] == nil else { throw .EEXIST }
        let id = s.nextNode
        s.nextNode += 1
        s.nodes[id] = Node(mode: mode, parent: parent, name: name, links: mode & S_IFMT == S_IFDIR ? 2 : 1, target: target)
        dir.children[name] = id
        s.nodes[parent] = dir
        return id
    }

    private func child(_ s: State, parent: NodeID, name: String) throws(Errno) -> NodeID {
        guard let dir = s.nodes[parent], dir.isDirectory else { throw .ENOTDIR }
        guard let id = dir.children[name] else { throw .ENOENT }
        return id
    }

    /// Drops one link of `id` (removed from its directory already).
    private func dropLink(_ s: inout State, _ id: NodeID) {
        guard var n = s.nodes[id] else { return }
        n.links -= 1
        if n.links == 0 || n.isDirectory { s.nodes[id] = nil } else { s.nodes[id] = n }
    }

    private func newHandle(_ s: inout State) -> OpenedFile {
        defer { s.nextHandle += 1 }
        return OpenedFile(handle: s.nextHandle)
    }

    // MARK: names

    func lookup(_ caller: Caller, parent: NodeID, name: FileName) throws(Errno) -> Entry {
        try state.withLock { (s) throws(Errno) -> Entry in
            record(&s, "lookup \(parent) \(name.string)")
            let id = try child(s, parent: parent, name: name.string)
            return entry(id, try node(s, id))
        }
    }

    func forget(node: NodeID, count: UInt64) {
        state.withLock { record(&$0, "forget \(node)") }
    }

    func getattr(_ caller: Caller, node id: NodeID, handle: UInt64?) throws(Errno) -> Attributes {
        try state.withLock { (s) throws(Errno) -> Attributes in
            record(&s, "getattr \(id)")
            return Attributes(attributes(id, try node(s, id)), timeout: 0)
        }
    }

    func setattr(_ caller: Caller, node id: NodeID, changes: AttributeChanges) throws(Errno) -> Attributes {
        try state.withLock { (s) throws(Errno) -> Attributes in
            record(&s, changes.fields.contains(.size) ? "setattr \(id) size=\(changes.size)" : "setattr \(id)")
            var n = try node(s, id)
            if changes.fields.contains(.size) {
                guard !n.isDirectory else { throw .EISDIR }
                let size = Int(changes.size)
                if size < n.data.count { n.data.removeLast(n.data.count - size) } else {
                    n.data += [UInt8](repeating: 0, count: size - n.data.count)
                }
            }
            if changes.fields.contains(.mode) { n.mode = (n.mode & S_IFMT) | (changes.mode & 0o7777) }
            s.nodes[id] = n
            return Attributes(attributes(id, n), timeout: 0)
        }
    }

    func readlink(_ caller: Caller, node id: NodeID) throws(Errno) -> [CChar] {
        try state.withLock { (s) throws(Errno) -> [CChar] in
            record(&s, "readlink \(id)")
            let n = try node(s, id)
            guard n.mode & S_IFMT == S_IFLNK else { throw .EINVAL }
            return n.target.utf8.map { CChar(bitPattern: $0) }
        }
    }

    func mknod(_ caller: Caller, parent: NodeID, name: FileName, mode: mode_t, device: dev_t) throws(Errno) -> Entry {
        try state.withLock { (s) throws(Errno) -> Entry in
            record(&s, "mknod \(parent) \(name.string)")
            let id = try add(&s, parent: parent, name: name.string, mode: mode)
            return entry(id, try node(s, id))
        }
    }

    func mkdir(_ caller: Caller, parent: NodeID, name: FileName, mode: mode_t) throws(Errno) -> Entry {
        try state.withLock { (s) throws(Errno) -> Entry in
            record(&s, "mkdir \(parent) \(name.string)")
            let id = try add(&s, parent: parent, name: name.string, mode: S_IFDIR | (mode & 0o7777))
            return entry(id, try node(s, id))
        }
    }

    func symlink(_ caller: Caller, target: FileName, parent: NodeID, name: FileName) throws(Errno) -> Entry {
        try state.withLock { (s) throws(Errno) -> Entry in
            record(&s, "symlink \(parent) \(name.string)")
            let id = try add(&s, parent: parent, name: name.string, mode: S_IFLNK | 0o777, target: target.string)
            return entry(id, try node(s, id))
        }
    }

    func link(_ caller: Caller, node id: NodeID, newParent: NodeID, newName: FileName) throws(Errno) -> Entry {
        try state.withLock { (s) throws(Errno) -> Entry in
            record(&s, "link \(id) \(newParent) \(newName.string)")
            var n = try node(s, id)
            guard !n.isDirectory else { throw .EPERM }
            guard var dir = s.nodes[newParent], dir.isDirectory else { throw .ENOTDIR }
            guard dir.children[newName.string] == nil else { throw .EEXIST }
            dir.children[newName.string] = id
            s.nodes[newParent] = dir
            n.links += 1
            s.nodes[id] = n
            return entry(id, n)
        }
    }

    func unlink(_ caller: Caller, parent: NodeID, name: FileName) throws(Errno) {
        try state.withLock { (s) throws(Errno) in
            record(&s, "unlink \(parent) \(name.string)")
            let id = try child(s, parent: parent, name: name.string)
            guard !(try node(s, id)).isDirectory else { throw .EISDIR }
            s.nodes[parent]!.children[name.string] = nil
            dropLink(&s, id)
        }
    }

    func rmdir(_ caller: Caller, parent: NodeID, name: FileName) throws(Errno) {
        try state.withLock { (s) throws(Errno) in
            record(&s, "rmdir \(parent) \(name.string)")
            let id = try child(s, parent: parent, name: name.string)
            let n = try node(s, id)
            guard n.isDirectory else { throw .ENOTDIR }
            guard n.children.isEmpty else { throw .ENOTEMPTY }
            s.nodes[parent]!.children[name.string] = nil
            dropLink(&s, id)
        }
    }

    func rename(_ caller: Caller, parent: NodeID, name: FileName, newParent: NodeID, newName: FileName, flags: UInt32) throws(Errno) {
        try state.withLock { (s) throws(Errno) in
            record(&s, "rename \(parent) \(name.string) \(newParent) \(newName.string)")
            guard flags == 0 else { throw .EINVAL }
            let id = try child(s, parent: parent, name: name.string)
            guard s.nodes[newParent]?.isDirectory == true else { throw .ENOTDIR }
            if let replaced = s.nodes[newParent]!.children[newName.string], replaced != id {
                dropLink(&s, replaced)
            }
            s.nodes[parent]!.children[name.string] = nil
            s.nodes[newParent]!.children[newName.string] = id
            s.nodes[id]!.parent = newParent
            s.nodes[id]!.name = newName.string
        }
    }

    // MARK: files

    /// O_TRUNC empties the file, as the passthrough does (it asks the
    /// kernel for atomic_o_trunc, so no setattr comes first).
    func open(_ caller: Caller, node id: NodeID, flags: Int32) throws(Errno) -> OpenedFile {
        try state.withLock { (s) throws(Errno) -> OpenedFile in
            record(&s, "open \(id)")
            guard !(try node(s, id)).isDirectory else { throw .EISDIR }
            if flags & O_TRUNC != 0 { s.nodes[id]!.data = [] }
            return newHandle(&s)
        }
    }

    func create(_ caller: Caller, parent: NodeID, name: FileName, mode: mode_t, flags: Int32) throws(Errno) -> (Entry, OpenedFile) {
        try state.withLock { (s) throws(Errno) -> (Entry, OpenedFile) in
            record(&s, "create \(parent) \(name.string)")
            let id = try add(&s, parent: parent, name: name.string, mode: S_IFREG | (mode & 0o7777))
            return (entry(id, try node(s, id)), newHandle(&s))
        }
    }

    func read(_ caller: Caller, node id: NodeID, handle: UInt64, offset: off_t, size: Int) throws(Errno) -> ReadData {
        try state.withLock { (s) throws(Errno) -> ReadData in
            record(&s, "read \(id) @\(offset)+\(size)")
            let data = try node(s, id).data
            let start = min(Int(offset), data.count)
            return .bytes(Array(data[start..<min(data.count, start + size)]))
        }
    }

    func write(_ caller: Caller, node id: NodeID, handle: UInt64, data: WriteSource, offset: off_t, fromWriteback: Bool) throws(Errno) -> Int {
        let bytes = try data.bytes(limit: data.count)
        return try state.withLock { (s) throws(Errno) -> Int in
            record(&s, "write \(id) @\(offset)+\(bytes.count)" + (fromWriteback ? " writeback" : ""))
            var n = try node(s, id)
            let end = Int(offset) + bytes.count
            if n.data.count < end { n.data += [UInt8](repeating: 0, count: end - n.data.count) }
            n.data.replaceSubrange(Int(offset)..<end, with: bytes)
            s.nodes[id] = n
            return bytes.count
        }
    }

    func flush(_ caller: Caller, node id: NodeID, handle: UInt64) throws(Errno) {
        state.withLock { record(&$0, "flush \(id)") }
    }

    func release(_ caller: Caller, node id: NodeID, handle: UInt64) {
        state.withLock { record(&$0, "release \(id)") }
    }

    func fsync(_ caller: Caller, node id: NodeID, handle: UInt64, dataOnly: Bool) throws(Errno) {
        state.withLock { record(&$0, (dataOnly ? "fdatasync " : "fsync ") + "\(id)") }
    }

    func fallocate(_ caller: Caller, node id: NodeID, handle: UInt64, mode: Int32, offset: off_t, length: off_t) throws(Errno) {
        try state.withLock { (s) throws(Errno) in
            record(&s, "fallocate \(id) @\(offset)+\(length)")
            guard mode == 0 else { throw .EOPNOTSUPP }
            var n = try node(s, id)
            let end = Int(offset + length)
            if n.data.count < end { n.data += [UInt8](repeating: 0, count: end - n.data.count) }
            s.nodes[id] = n
        }
    }

    func copyFileRange(_ caller: Caller, from source: NodeID, sourceHandle: UInt64, sourceOffset: off_t,
                       to destination: NodeID, destinationHandle: UInt64, destinationOffset: off_t,
                       length: Int, flags: Int32) throws(Errno) -> Int {
        try state.withLock { (s) throws(Errno) -> Int in
            record(&s, "copy_file_range \(destination) @\(destinationOffset)+\(length)")
            let from = try node(s, source).data
            var to = try node(s, destination)
            let start = min(Int(sourceOffset), from.count)
            let bytes = from[start..<min(from.count, start + length)]
            let end = Int(destinationOffset) + bytes.count
            if to.data.count < end { to.data += [UInt8](repeating: 0, count: end - to.data.count) }
            to.data.replaceSubrange(Int(destinationOffset)..<end, with: bytes)
            s.nodes[destination] = to
            return bytes.count
        }
    }

    // MARK: directories

    func opendir(_ caller: Caller, node id: NodeID, flags: Int32) throws(Errno) -> OpenedFile {
        try state.withLock { (s) throws(Errno) -> OpenedFile in
            record(&s, "opendir \(id)")
            guard (try node(s, id)).isDirectory else { throw .ENOTDIR }
            return newHandle(&s)
        }
    }

    /// ".", "..", then the children by name; offset N resumes at the Nth.
    func readdir(_ caller: Caller, node id: NodeID, handle: UInt64, offset: off_t, plus: Bool, into buffer: inout DirectoryBuffer) throws(Errno) {
        let listing = try state.withLock { (s) throws(Errno) -> [(String, stat)] in
            record(&s, "readdir \(id)")
            let dir = try node(s, id)
            let parent = try node(s, dir.parent)
            return [(".", attributes(id, dir)), ("..", attributes(dir.parent, parent))]
                + dir.children.sorted { $0.key < $1.key }.map { ($0.key, attributes($0.value, s.nodes[$0.value]!)) }
        }
        for (index, (name, st)) in listing.enumerated() where index >= offset {
            let added = name.withCString { n in
                plus ? buffer.addPlus(n, entry: Entry(node: index < 2 ? 0 : NodeID(st.st_ino), attributes: st,
                                                      attributesTimeout: 0, entryTimeout: 0), nextOffset: off_t(index + 1))
                     : buffer.add(n, attributes: st, nextOffset: off_t(index + 1))
            }
            if !added { return }
        }
    }

    func releasedir(_ caller: Caller, node id: NodeID, handle: UInt64) {
        state.withLock { record(&$0, "releasedir \(id)") }
    }

    func fsyncdir(_ caller: Caller, node id: NodeID, handle: UInt64, dataOnly: Bool) throws(Errno) {
        state.withLock { record(&$0, "fsyncdir \(id)") }
    }

    // MARK: the rest

    /// A 1 GiB disk of 4 KiB blocks, half free.
    func statfs(_ caller: Caller, node id: NodeID) throws(Errno) -> statvfs {
        state.withLock { record(&$0, "statfs \(id)") }
        var st = statvfs()
        st.f_bsize = 4096
        st.f_frsize = 4096
        st.f_blocks = 262_144
        st.f_bfree = 131_072
        st.f_bavail = 131_072
        st.f_namemax = 255
        return st
    }

    func access(_ caller: Caller, node id: NodeID, mask: Int32) throws(Errno) {
        state.withLock { record(&$0, "access \(id)") }
    }

    func setxattr(_ caller: Caller, node id: NodeID, name: FileName, value: UnsafeRawBufferPointer, flags: Int32) throws(Errno) {
        try state.withLock { (s) throws(Errno) in
            record(&s, "setxattr \(id) \(name.string)")
            var n = try node(s, id)
            n.xattrs[name.string] = Array(value)
            s.nodes[id] = n
        }
    }

    func getxattr(_ caller: Caller, node id: NodeID, name: FileName, size: Int) throws(Errno) -> XattrReply {
        try state.withLock { (s) throws(Errno) -> XattrReply in
            record(&s, "getxattr \(id) \(name.string)")
            guard let value = try node(s, id).xattrs[name.string] else { throw .ENODATA }
            return size == 0 ? .size(value.count) : .data(value)
        }
    }
}
