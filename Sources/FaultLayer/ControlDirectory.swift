import FuseKit
import Glibc
import Synchronization

/// The virtual `.faultfs` directory at the mount root and its three files.
/// The directory and `events` have tiny constant node ids; `control` and
/// `stats` get a new node id at every lookup (see `SnapshotNodes`), with the
/// top bit set. The decorated file system's node ids are addresses (see
/// Passthrough's Inode), which never fall in 2...5 nor have the top bit set.
enum ControlNode: NodeID, CaseIterable {
    case directory = 2
    case control = 3    // its st_ino; its node ids are snapshot ids
    case stats = 4      // likewise
    case events = 5

    static func of(_ node: NodeID) -> ControlNode? {
        if node & SnapshotNodes.tag != 0 { return node & 1 == 0 ? .control : .stats }
        return node >= 2 && node <= 5 ? ControlNode(rawValue: node) : nil
    }

    static func file(named name: FileName) -> ControlNode? {
        if name.equals("control") { return .control }
        if name.equals("stats") { return .stats }
        if name.equals("events") { return .events }
        return nil
    }

    var fileName: String {
        switch self {
        case .directory: return "."
        case .control: return "control"
        case .stats: return "stats"
        case .events: return "events"
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
        case .stats, .events: S_IFREG | 0o444
        }
        st.st_size = off_t(size)
        st.st_blksize = 4096
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        st.st_atim = now; st.st_mtim = now; st.st_ctim = now
        return st
    }
}

/// The texts of `control` and `stats`, one per node id.
///
/// With the writeback cache the kernel keeps a regular file's size itself:
/// it takes the size from the reply that creates the inode and then ignores
/// the size in later replies (a write through the cache may have grown it).
/// A file whose text changes under one node id would keep a stale size, and
/// `tail`, `head -c` or a reader that trusts fstat would cut it. So every
/// lookup of `control` or `stats` renders the text and answers a new node id
/// whose size is that text's length; every open of that node reads that
/// text. The kernel forgets the node when no dentry or open file uses it
/// (FUSE drops unused inodes at once), and the text goes with it.
final class SnapshotNodes: Sendable {
    /// Set in every snapshot node id; bit 0 tells stats (1) from control (0).
    static let tag: NodeID = 1 << 63
    private struct Table {
        var serial: NodeID = 0
        var texts: [NodeID: [UInt8]] = [:]
    }
    private let table = Mutex(Table())

    func make(_ file: ControlNode, text: String) -> (node: NodeID, size: Int) {
        let bytes = Array(text.utf8)
        let node = table.withLock { t in
            t.serial += 1
            let node = Self.tag | (t.serial << 1) | (file == .stats ? 1 : 0)
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

    /// Texts still remembered (for tests of forgetting).
    var count: Int { table.withLock { $0.texts.count } }
}
