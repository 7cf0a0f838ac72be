import FuseKit

/// What the fault layer asks of the file system it decorates, beyond the
/// FUSE operations: where a node lives and how much space the tree uses,
/// and, for the crash layer, how to reach backing files by identity (so an
/// undo works after the session and its node ids are gone).
public protocol BackingTree: AnyObject, Sendable {
    /// Relative to the mount root, no leading slash; nil when unknown.
    func path(of node: NodeID) -> String?
    /// The inode number `stat` shows (and kernel tracepoints call `ino`).
    func inodeNumber(of node: NodeID) -> UInt64
    /// Apparent bytes of all files (for `capacity`).
    func usedBytes() -> Int64

    /// The node's backing file handle as bytes (opaque); nil when the
    /// backing file system has none (crash simulation then stops).
    func backingHandle(of node: NodeID) -> [UInt8]?
    /// Opens the backing file `backingHandle` named; the caller closes the fd.
    func openBacking(handle: [UInt8], flags: Int32) throws(Errno) -> Int32
    /// A new fd (O_RDONLY, a directory) of the backing root; the caller closes it.
    func openBackingRoot() throws(Errno) -> Int32
    /// Runs `body` with an fd of the node's backing file usable as the
    /// dirfd of *at calls (an O_PATH fd); valid only during `body`.
    func withBackingFD<T>(of node: NodeID, _ body: (Int32) throws(Errno) -> T) throws(Errno) -> T
    /// Reads the node's backing bytes at `offset` as they are now, through
    /// the open file `handle` when it can read.
    func readBacking(of node: NodeID, handle: UInt64?, offset: Int64, into buffer: UnsafeMutableRawBufferPointer) throws(Errno) -> Int
    /// Copies backing bytes of the node to `destination` inside the kernel
    /// (copy_file_range); the bytes copied, fewer at the end of the file.
    /// Throws EXDEV (or ENOSYS) when that cannot be done: `readBacking` then.
    func copyBacking(of node: NodeID, handle: UInt64?, offset: Int64, length: Int,
                     to destination: Int32, at destinationOffset: Int64) throws(Errno) -> Int
}

public extension BackingTree {
    func backingHandle(of node: NodeID) -> [UInt8]? { nil }
    func openBacking(handle: [UInt8], flags: Int32) throws(Errno) -> Int32 { throw .ENOSYS }
    func openBackingRoot() throws(Errno) -> Int32 { throw .ENOSYS }
    func withBackingFD<T>(of node: NodeID, _ body: (Int32) throws(Errno) -> T) throws(Errno) -> T { throw .ENOSYS }
    func readBacking(of node: NodeID, handle: UInt64?, offset: Int64, into buffer: UnsafeMutableRawBufferPointer) throws(Errno) -> Int {
        throw .ENOSYS
    }
    func copyBacking(of node: NodeID, handle: UInt64?, offset: Int64, length: Int,
                     to destination: Int32, at destinationOffset: Int64) throws(Errno) -> Int { throw .ENOSYS }
}
