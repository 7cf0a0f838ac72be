import CFuse
import Glibc
// The binding speaks System's `Errno`: whoever implements or calls a
// `FileSystem` gets System with FuseKit.
@_exported import System

/// A file system served over FUSE. Each method answers one request; the
/// binding turns the returned value or thrown `Errno` into exactly one reply.
/// Handlers run on libfuse's worker threads, several at once, and may block
/// (a blocked handler holds one worker; libfuse starts another).
///
/// Every method has a default that answers ENOSYS (or, for forget and
/// release, does nothing), so a decorator forwards what it does not change.
public protocol FileSystem: AnyObject, Sendable {
    /// Called once the kernel connects: read `conn.capable`, set `conn.want`.
    func initialize(_ conn: inout Connection, session: SessionState)
    func destroy()
    /// Node ids this file system never hands out, so that a decorator may
    /// answer nodes of its own with them; nil (the default) promises none.
    var unusedNodeIDs: ClosedRange<NodeID>? { get }

    func lookup(_ caller: Caller, parent: NodeID, name: FileName) throws(Errno) -> Entry
    func forget(node: NodeID, count: UInt64)
    func getattr(_ caller: Caller, node: NodeID, handle: UInt64?) throws(Errno) -> Attributes
    func setattr(_ caller: Caller, node: NodeID, changes: AttributeChanges) throws(Errno) -> Attributes
    func readlink(_ caller: Caller, node: NodeID) throws(Errno) -> [CChar]
    func mknod(_ caller: Caller, parent: NodeID, name: FileName, mode: mode_t, device: dev_t) throws(Errno) -> Entry
    func mkdir(_ caller: Caller, parent: NodeID, name: FileName, mode: mode_t) throws(Errno) -> Entry
    func unlink(_ caller: Caller, parent: NodeID, name: FileName) throws(Errno)
    func rmdir(_ caller: Caller, parent: NodeID, name: FileName) throws(Errno)
    func symlink(_ caller: Caller, target: FileName, parent: NodeID, name: FileName) throws(Errno) -> Entry
    func rename(_ caller: Caller, parent: NodeID, name: FileName, newParent: NodeID, newName: FileName, flags: UInt32) throws(Errno)
    func link(_ caller: Caller, node: NodeID, newParent: NodeID, newName: FileName) throws(Errno) -> Entry

    func open(_ caller: Caller, node: NodeID, flags: Int32) throws(Errno) -> OpenedFile
    func create(_ caller: Caller, parent: NodeID, name: FileName, mode: mode_t, flags: Int32) throws(Errno) -> (Entry, OpenedFile)
    func read(_ caller: Caller, node: NodeID, handle: UInt64, offset: off_t, size: Int) throws(Errno) -> ReadData
    /// `fromWriteback`: the write comes from the page cache's writeback
    /// (fi->writepage); its caller is 0 and `handle` is any writable handle.
    func write(_ caller: Caller, node: NodeID, handle: UInt64, data: WriteSource, offset: off_t, fromWriteback: Bool) throws(Errno) -> Int
    func flush(_ caller: Caller, node: NodeID, handle: UInt64) throws(Errno)
    func release(_ caller: Caller, node: NodeID, handle: UInt64)
    func fsync(_ caller: Caller, node: NodeID, handle: UInt64, dataOnly: Bool) throws(Errno)
    func fallocate(_ caller: Caller, node: NodeID, handle: UInt64, mode: Int32, offset: off_t, length: off_t) throws(Errno)
    func copyFileRange(_ caller: Caller, from source: NodeID, sourceHandle: UInt64, sourceOffset: off_t,
                       to destination: NodeID, destinationHandle: UInt64, destinationOffset: off_t,
                       length: Int, flags: Int32) throws(Errno) -> Int
    func lseek(_ caller: Caller, node: NodeID, handle: UInt64, offset: off_t, whence: Int32) throws(Errno) -> off_t

    func opendir(_ caller: Caller, node: NodeID, flags: Int32) throws(Errno) -> OpenedFile
    /// Fill `buffer` from `offset` on; `plus` for readdirplus.
    func readdir(_ caller: Caller, node: NodeID, handle: UInt64, offset: off_t, plus: Bool, into buffer: inout DirectoryBuffer) throws(Errno)
    func releasedir(_ caller: Caller, node: NodeID, handle: UInt64)
    func fsyncdir(_ caller: Caller, node: NodeID, handle: UInt64, dataOnly: Bool) throws(Errno)

    func statfs(_ caller: Caller, node: NodeID) throws(Errno) -> statvfs
    func access(_ caller: Caller, node: NodeID, mask: Int32) throws(Errno)
    func setxattr(_ caller: Caller, node: NodeID, name: FileName, value: UnsafeRawBufferPointer, flags: Int32) throws(Errno)
    func getxattr(_ caller: Caller, node: NodeID, name: FileName, size: Int) throws(Errno) -> XattrReply
    func listxattr(_ caller: Caller, node: NodeID, size: Int) throws(Errno) -> XattrReply
    func removexattr(_ caller: Caller, node: NodeID, name: FileName) throws(Errno)
}

public extension FileSystem {
    func initialize(_ conn: inout Connection, session: SessionState) {}
    func destroy() {}
    var unusedNodeIDs: ClosedRange<NodeID>? { nil }
    func lookup(_ caller: Caller, parent: NodeID, name: FileName) throws(Errno) -> Entry { throw .ENOSYS }
    func forget(node: NodeID, count: UInt64) {}
    func getattr(_ caller: Caller, node: NodeID, handle: UInt64?) throws(Errno) -> Attributes { throw .ENOSYS }
    func setattr(_ caller: Caller, node: NodeID, changes: AttributeChanges) throws(Errno) -> Attributes { throw .ENOSYS }
    func readlink(_ caller: Caller, node: NodeID) throws(Errno) -> [CChar] { throw .ENOSYS }
    func mknod(_ caller: Caller, parent: NodeID, name: FileName, mode: mode_t, device: dev_t) throws(Errno) -> Entry { throw .ENOSYS }
    func mkdir(_ caller: Caller, parent: NodeID, name: FileName, mode: mode_t) throws(Errno) -> Entry { throw .ENOSYS }
    func unlink(_ caller: Caller, parent: NodeID, name: FileName) throws(Errno) { throw .ENOSYS }
    func rmdir(_ caller: Caller, parent: NodeID, name: FileName) throws(Errno) { throw .ENOSYS }
    func symlink(_ caller: Caller, target: FileName, parent: NodeID, name: FileName) throws(Errno) -> Entry { throw .ENOSYS }
    func rename(_ caller: Caller, parent: NodeID, name: FileName, newParent: NodeID, newName: FileName, flags: UInt32) throws(Errno) { throw .ENOSYS }
    func link(_ caller: Caller, node: NodeID, newParent: NodeID, newName: FileName) throws(Errno) -> Entry { throw .ENOSYS }
    func open(_ caller: Caller, node: NodeID, flags: Int32) throws(Errno) -> OpenedFile { throw .ENOSYS }
    func create(_ caller: Caller, parent: NodeID, name: FileName, mode: mode_t, flags: Int32) throws(Errno) -> (Entry, OpenedFile) { throw .ENOSYS }
    func read(_ caller: Caller, node: NodeID, handle: UInt64, offset: off_t, size: Int) throws(Errno) -> ReadData { throw .ENOSYS }
    func write(_ caller: Caller, node: NodeID, handle: UInt64, data: WriteSource, offset: off_t, fromWriteback: Bool) throws(Errno) -> Int { throw .ENOSYS }
    func flush(_ caller: Caller, node: NodeID, handle: UInt64) throws(Errno) { throw .ENOSYS }
    func release(_ caller: Caller, node: NodeID, handle: UInt64) {}
    func fsync(_ caller: Caller, node: NodeID, handle: UInt64, dataOnly: Bool) throws(Errno) { throw .ENOSYS }
    func fallocate(_ caller: Caller, node: NodeID, handle: UInt64, mode: Int32, offset: off_t, length: off_t) throws(Errno) { throw .ENOSYS }
    func copyFileRange(_ caller: Caller, from source: NodeID, sourceHandle: UInt64, sourceOffset: off_t,
                       to destination: NodeID, destinationHandle: UInt64, destinationOffset: off_t,
                       length: Int, flags: Int32) throws(Errno) -> Int { throw .ENOSYS }
    func lseek(_ caller: Caller, node: NodeID, handle: UInt64, offset: off_t, whence: Int32) throws(Errno) -> off_t { throw .ENOSYS }
    func opendir(_ caller: Caller, node: NodeID, flags: Int32) throws(Errno) -> OpenedFile { throw .ENOSYS }
    func readdir(_ caller: Caller, node: NodeID, handle: UInt64, offset: off_t, plus: Bool, into buffer: inout DirectoryBuffer) throws(Errno) { throw .ENOSYS }
    func releasedir(_ caller: Caller, node: NodeID, handle: UInt64) {}
    func fsyncdir(_ caller: Caller, node: NodeID, handle: UInt64, dataOnly: Bool) throws(Errno) { throw .ENOSYS }
    func statfs(_ caller: Caller, node: NodeID) throws(Errno) -> statvfs { throw .ENOSYS }
    func access(_ caller: Caller, node: NodeID, mask: Int32) throws(Errno) { throw .ENOSYS }
    func setxattr(_ caller: Caller, node: NodeID, name: FileName, value: UnsafeRawBufferPointer, flags: Int32) throws(Errno) { throw .ENOSYS }
    func getxattr(_ caller: Caller, node: NodeID, name: FileName, size: Int) throws(Errno) -> XattrReply { throw .ENOSYS }
    func listxattr(_ caller: Caller, node: NodeID, size: Int) throws(Errno) -> XattrReply { throw .ENOSYS }
    func removexattr(_ caller: Caller, node: NodeID, name: FileName) throws(Errno) { throw .ENOSYS }
}
