@testable import FaultLayer
import FuseKit
import Glibc
import Testing

/// An open file: its node and handle.
struct OpenFile { let node: NodeID; let handle: UInt64 }

/// Calls a `FileSystem` the way the kernel's requests would, by paths: what
/// both fixtures (`Layer` over the in-memory fake, `CrashFixture` over a
/// real passthrough) share. Each decides what closing a file means.
protocol RequestDriver: AnyObject {
    var fs: any FileSystem { get }
    var caller: Caller { get }
    func close(_ file: OpenFile)
}

extension RequestDriver {
    // MARK: names

    /// The node of `path` (relative, "" for the root).
    func node(_ path: String) throws(Errno) -> NodeID {
        var node = rootNodeID
        for part in path.split(separator: "/") {
            node = try withName(String(part)) { (name) throws(Errno) in try fs.lookup(caller, parent: node, name: name).node }
        }
        return node
    }

    /// The parent's node and the last name of `path`.
    func parentAndName(_ path: String) throws(Errno) -> (NodeID, String) {
        let parts = path.split(separator: "/")
        return (try node(parts.dropLast().joined(separator: "/")), String(parts.last!))
    }

    @discardableResult
    func create(_ path: String, flags: Int32 = O_RDWR) throws(Errno) -> OpenFile {
        let (parent, last) = try parentAndName(path)
        let (entry, opened) = try withName(last) { (name) throws(Errno) in
            try fs.create(caller, parent: parent, name: name, mode: 0o644, flags: flags)
        }
        return OpenFile(node: entry.node, handle: opened.handle)
    }

    func open(_ path: String, flags: Int32 = O_RDWR) throws(Errno) -> OpenFile {
        let node = try node(path)
        return OpenFile(node: node, handle: try fs.open(caller, node: node, flags: flags).handle)
    }

    @discardableResult
    func mkdir(_ path: String, mode: mode_t = 0o755) throws(Errno) -> NodeID {
        let (parent, last) = try parentAndName(path)
        return try withName(last) { (name) throws(Errno) in try fs.mkdir(caller, parent: parent, name: name, mode: mode).node }
    }

    func rmdir(_ path: String) throws(Errno) {
        let (parent, last) = try parentAndName(path)
        try withName(last) { (name) throws(Errno) in try fs.rmdir(caller, parent: parent, name: name) }
    }

    func unlink(_ path: String) throws(Errno) {
        let (parent, last) = try parentAndName(path)
        try withName(last) { (name) throws(Errno) in try fs.unlink(caller, parent: parent, name: name) }
    }

    func link(_ path: String, _ newPath: String) throws(Errno) {
        let node = try node(path)
        let (parent, last) = try parentAndName(newPath)
        _ = try withName(last) { (name) throws(Errno) in try fs.link(caller, node: node, newParent: parent, newName: name) }
    }

    func symlink(_ target: String, _ path: String) throws(Errno) {
        let (parent, last) = try parentAndName(path)
        _ = try withName(target) { (t) throws(Errno) in
            try withName(last) { (name) throws(Errno) in try fs.symlink(caller, target: t, parent: parent, name: name) }
        }
    }

    func rename(_ from: String, _ to: String, flags: UInt32 = 0) throws(Errno) {
        let (parent, last) = try parentAndName(from)
        let (newParent, newLast) = try parentAndName(to)
        try withName(last) { (name) throws(Errno) in
            try withName(newLast) { (newName) throws(Errno) in
                try fs.rename(caller, parent: parent, name: name, newParent: newParent, newName: newName, flags: flags)
            }
        }
    }

    func chmod(_ path: String, _ mode: mode_t) throws(Errno) {
        _ = try fs.setattr(caller, node: try node(path), changes: AttributeChanges(
            fields: [.mode], mode: mode, uid: 0, gid: 0, size: 0, atime: timespec(), mtime: timespec(), handle: nil))
    }

    // MARK: files

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
        case .file: Issue.record("the fake and the control files answer reads from memory"); return []
        }
    }

    func truncate(_ file: OpenFile, to size: off_t) throws(Errno) {
        _ = try fs.setattr(caller, node: file.node, changes: AttributeChanges(
            fields: [.size], mode: 0, uid: 0, gid: 0, size: size, atime: timespec(), mtime: timespec(), handle: file.handle))
    }

    func fallocate(_ file: OpenFile, offset: off_t, length: off_t) throws(Errno) {
        try fs.fallocate(caller, node: file.node, handle: file.handle, mode: 0, offset: offset, length: length)
    }

    func fsync(_ file: OpenFile, dataOnly: Bool = false) throws(Errno) {
        try fs.fsync(caller, node: file.node, handle: file.handle, dataOnly: dataOnly)
    }

    func fsyncDirectory(_ path: String) throws(Errno) {
        let node = try node(path)
        let handle = try fs.opendir(caller, node: node, flags: O_RDONLY).handle
        defer { fs.releasedir(caller, node: node, handle: handle) }
        try fs.fsyncdir(caller, node: node, handle: handle, dataOnly: false)
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
}
