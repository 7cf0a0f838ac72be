import FuseKit

/// What the fault layer asks of the file system it decorates, beyond the
/// FUSE operations: where a node lives and how much space the tree uses.
public protocol BackingTree: AnyObject, Sendable {
    /// Relative to the mount root, no leading slash; nil when unknown.
    func path(of node: NodeID) -> String?
    /// The inode number `stat` shows (and kernel tracepoints call `ino`).
    func inodeNumber(of node: NodeID) -> UInt64
    /// Apparent bytes of all files (for `capacity`).
    func usedBytes() -> Int64
}
