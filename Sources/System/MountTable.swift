// The kernel's mount table, /proc/self/mountinfo: the one parser of it.
import Glibc

/// One line of /proc/self/mountinfo (see proc(5)).
public struct MountEntry: Equatable, Sendable {
    public var mountID: Int
    /// `major:minor` of the mounted device (field 3).
    public var device: String
    public var root: String
    public var mountPoint: String
    public var fileSystemType: String
    public var source: String

    public init(mountID: Int, device: String = "", root: String, mountPoint: String, fileSystemType: String, source: String) {
        self.mountID = mountID; self.device = device; self.root = root; self.mountPoint = mountPoint
        self.fileSystemType = fileSystemType; self.source = source
    }
}

public enum MountTable {
    /// Parses mountinfo text. Malformed lines are skipped.
    /// "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue"
    public static func parse(_ text: String) -> [MountEntry] {
        text.split(separator: "\n").compactMap { line in
            let fields = line.split(separator: " ", omittingEmptySubsequences: false).map(String.init)
            // Optional fields (field 7 on) end with a lone "-".
            guard fields.count >= 10, let id = Int(fields[0]),
                  let dash = fields[6...].firstIndex(of: "-"), dash + 2 < fields.count else { return nil }
            return MountEntry(mountID: id, device: fields[2], root: unescape(fields[3]), mountPoint: unescape(fields[4]),
                              fileSystemType: unescape(fields[dash + 1]), source: unescape(fields[dash + 2]))
        }
    }

    /// The kernel writes space, tab, newline and backslash as \040 \011 \012 \134.
    public static func unescape(_ field: String) -> String {
        guard field.contains("\\") else { return field }
        var bytes: [UInt8] = []
        let raw = Array(field.utf8)
        var i = 0
        while i < raw.count {
            if raw[i] == UInt8(ascii: "\\"), i + 3 < raw.count,
               let value = UInt8(String(decoding: raw[(i + 1)...(i + 3)], as: UTF8.self), radix: 8) {
                bytes.append(value)
                i += 4
            } else {
                bytes.append(raw[i])
                i += 1
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The mounts of this process's namespace ([] if unreadable).
    public static func current() -> [MountEntry] {
        parse(File.readText("/proc/self/mountinfo") ?? "")
    }

    /// Whatever is mounted last (on top) at `path`, an absolute canonical path.
    public static func topMount(at path: String, in entries: [MountEntry] = current()) -> MountEntry? {
        entries.last { $0.mountPoint == path }
    }
}
