import FuseKit
import Glibc

/// The virtual `.faultfs` directory at the mount root and its three files.
/// Their node ids are tiny constants: the decorated file system's node ids
/// are addresses (see Passthrough's Inode), which never fall in 2...5.
enum ControlNode: NodeID, CaseIterable {
    case directory = 2
    case control = 3
    case stats = 4
    case events = 5

    static func of(_ node: NodeID) -> ControlNode? {
        node >= 2 && node <= 5 ? ControlNode(rawValue: node) : nil
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

/// The bytes one open of `control` or `stats` reads: taken at open, so a
/// reader sees one consistent text however it splits its reads.
final class Snapshot: @unchecked Sendable {
    let bytes: [UInt8]
    init(_ text: String) { bytes = Array(text.utf8) }

    var handle: UInt64 { UInt64(UInt(bitPattern: Unmanaged.passRetained(self).toOpaque())) }
    static func from(_ handle: UInt64) -> Snapshot {
        Unmanaged<Snapshot>.fromOpaque(UnsafeRawPointer(bitPattern: UInt(handle))!).takeUnretainedValue()
    }
    static func release(_ handle: UInt64) {
        Unmanaged<Snapshot>.fromOpaque(UnsafeRawPointer(bitPattern: UInt(handle))!).release()
    }

    func read(offset: off_t, size: Int) -> [UInt8] {
        guard offset >= 0, offset < bytes.count else { return [] }
        let start = Int(offset)
        return Array(bytes[start..<min(bytes.count, start + size)])
    }
}
