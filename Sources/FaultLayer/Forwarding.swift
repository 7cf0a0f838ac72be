import FuseKit
import Glibc

/// A decorator: every request it does not handle itself goes to `inner`
/// unchanged (rather than to `FileSystem`'s ENOSYS defaults).
protocol ForwardingFileSystem: FileSystem {
    var inner: any FileSystem { get }
}

extension ForwardingFileSystem {
    func initialize(_ conn: inout Connection, session: SessionState) { inner.initialize(&conn, session: session) }
    func destroy() { inner.destroy() }
    var unusedNodeIDs: ClosedRange<NodeID>? { inner.unusedNodeIDs }
    func lookup(_ caller: Caller, parent: NodeID, name: FileName) throws(Errno) -> Entry {
        try inner.lookup(caller, parent: parent, name: name)
    }
    func forget(node: NodeID, count: UInt64) { inner.forget(node: node, count: count) }
    func getattr(_ caller: Caller, node: NodeID, handle: UInt64?) throws(Errno) -> Attributes {
        try inner.getattr(caller, node: node, handle: handle)
    }
    func setattr(_ caller: Caller, node: NodeID, changes: AttributeChanges) throws(Errno) -> Attributes {
        try inner.setattr(caller, node: node, changes: changes)
    }
    func readlink(_ caller: Caller, node: NodeID) throws(Errno) -> [CChar] { try inner.readlink(caller, node: node) }
    func mknod(_ caller: Caller, parent: NodeID, name: FileName, mode: mode_t, device: dev_t) throws(Errno) -> Entry {
        try inner.mknod(caller, parent: parent, name: name, mode: mode, device: device)
    }
    func mkdir(_ caller: Caller, parent: NodeID, name: FileName, mode: mode_t) throws(Errno) -> Entry {
        try inner.mkdir(caller, parent: parent, name: name, mode: mode)
    }
    func unlink(_ caller: Caller, parent: NodeID, name: FileName) throws(Errno) { try inner.unlink(caller, parent: parent, name: name) }
    func rmdir(_ caller: Caller, parent: NodeID, name: FileName) throws(Errno) { try inner.rmdir(caller, parent: parent, name: name) }
    func symlink(_ caller: Caller, target: FileName, parent: NodeID, name: FileName) throws(Errno) -> Entry {
        try inner.symlink(caller, target: target, parent: parent, name: name)
    }
    func rename(_ caller: Caller, parent: NodeID, name: FileName, newParent: NodeID, newName: FileName, flags: UInt32) throws(Errno) {
        try inner.rename(caller, parent: parent, name: name, newParent: newParent, newName: newName, flags: flags)
    }
    func link(_ caller: Caller, node: NodeID, newParent: NodeID, newName: FileName) throws(Errno) -> Entry {
        try inner.link(caller, node: node, newParent: newParent, newName: newName)
    }
    func open(_ caller: Caller, node: NodeID, flags: Int32) throws(Errno) -> OpenedFile { try inner.open(caller, node: node, flags: flags) }
    func create(_ caller: Caller, parent: NodeID, name: FileName, mode: mode_t, flags: Int32) throws(Errno) -> (Entry, OpenedFile) {
        try inner.create(caller, parent: parent, name: name, mode: mode, flags: flags)
    }
    func read(_ caller: Caller, node: NodeID, handle: UInt64, offset: off_t, size: Int) throws(Errno) -> ReadData {
        try inner.read(caller, node: node, handle: handle, offset: offset, size: size)
    }
    func write(_ caller: Caller, node: NodeID, handle: UInt64, data: WriteSource, offset: off_t, fromWriteback: Bool) throws(Errno) -> Int {
        try inner.write(caller, node: node, handle: handle, data: data, offset: offset, fromWriteback: fromWriteback)
    }
    func flush(_ caller: Caller, node: NodeID, handle: UInt64) throws(Errno) { try inner.flush(caller, node: node, handle: handle) }
    func release(_ caller: Caller, node: NodeID, handle: UInt64) { inner.release(caller, node: node, handle: handle) }
    func fsync(_ caller: Caller, node: NodeID, handle: UInt64, dataOnly: Bool) throws(Errno) {
        try inner.fsync(caller, node: node, handle: handle, dataOnly: dataOnly)
    }
    func fallocate(_ caller: Caller, node: NodeID, handle: UInt64, mode: Int32, offset: off_t, length: off_t) throws(Errno) {
        try inner.fallocate(caller, node: node, handle: handle, mode: mode, offset: offset, length: length)
    }
    func copyFileRange(_ caller: Caller, from source: NodeID, sourceHandle: UInt64, sourceOffset: off_t,
                       to destination: NodeID, destinationHandle: UInt64, destinationOffset: off_t,
                       length: Int, flags: Int32) throws(Errno) -> Int {
        try inner.copyFileRange(caller, from: source, sourceHandle: sourceHandle, sourceOffset: sourceOffset,
                                to: destination, destinationHandle: destinationHandle,
                                destinationOffset: destinationOffset, length: length, flags: flags)
    }
    func lseek(_ caller: Caller, node: NodeID, handle: UInt64, offset: off_t, whence: Int32) throws(Errno) -> off_t {
        try inner.lseek(caller, node: node, handle: handle, offset: offset, whence: whence)
    }
    func opendir(_ caller: Caller, node: NodeID, flags: Int32) throws(Errno) -> OpenedFile { try inner.opendir(caller, node: node, flags: flags) }
    func readdir(_ caller: Caller, node: NodeID, handle: UInt64, offset: off_t, plus: Bool, into buffer: inout DirectoryBuffer) throws(Errno) {
        try inner.readdir(caller, node: node, handle: handle, offset: offset, plus: plus, into: &buffer)
    }
    func releasedir(_ caller: Caller, node: NodeID, handle: UInt64) { inner.releasedir(caller, node: node, handle: handle) }
    func fsyncdir(_ caller: Caller, node: NodeID, handle: UInt64, dataOnly: Bool) throws(Errno) {
        try inner.fsyncdir(caller, node: node, handle: handle, dataOnly: dataOnly)
    }
    func statfs(_ caller: Caller, node: NodeID) throws(Errno) -> statvfs { try inner.statfs(caller, node: node) }
    func access(_ caller: Caller, node: NodeID, mask: Int32) throws(Errno) { try inner.access(caller, node: node, mask: mask) }
    func setxattr(_ caller: Caller, node: NodeID, name: FileName, value: UnsafeRawBufferPointer, flags: Int32) throws(Errno) {
        try inner.setxattr(caller, node: node, name: name, value: value, flags: flags)
    }
    func getxattr(_ caller: Caller, node: NodeID, name: FileName, size: Int) throws(Errno) -> XattrReply {
        try inner.getxattr(caller, node: node, name: name, size: size)
    }
    func listxattr(_ caller: Caller, node: NodeID, size: Int) throws(Errno) -> XattrReply { try inner.listxattr(caller, node: node, size: size) }
    func removexattr(_ caller: Caller, node: NodeID, name: FileName) throws(Errno) { try inner.removexattr(caller, node: node, name: name) }
}
