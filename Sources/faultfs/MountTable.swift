// The kernel's mount table (/proc/self/mountinfo) and path helpers, used to
// refuse a second mount on a faultfs mount and to find what `umount` undoes.
import Glibc

/// One line of /proc/self/mountinfo (see proc(5)).
struct MountEntry: Equatable, Sendable {
    var mountID: Int
    var root: String
    var mountPoint: String
    var fileSystemType: String
    var source: String

    /// Our mounts: libfuse names them "fuse." + subtype.
    var isFaultFS: Bool { fileSystemType == "fuse.faultfs" }
}

enum MountTable {
    /// Parses mountinfo text. Malformed lines are skipped.
    /// "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue"
    static func parse(_ text: String) -> [MountEntry] {
        text.split(separator: "\n").compactMap { line in
            let fields = line.split(separator: " ", omittingEmptySubsequences: false).map(String.init)
            // Optional fields (field 7 on) end with a lone "-".
            guard fields.count >= 10, let id = Int(fields[0]),
                  let dash = fields[6...].firstIndex(of: "-"), dash + 2 < fields.count else { return nil }
            return MountEntry(mountID: id, root: unescape(fields[3]), mountPoint: unescape(fields[4]),
                              fileSystemType: unescape(fields[dash + 1]), source: unescape(fields[dash + 2]))
        }
    }

    /// The kernel writes space, tab, newline and backslash as \040 \011 \012 \134.
    static func unescape(_ field: String) -> String {
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
    static func current() -> [MountEntry] {
        parse(readTextFile("/proc/self/mountinfo") ?? "")
    }

    /// The faultfs mount whose mount point is `path` (an absolute,
    /// canonical path), the topmost if several are stacked.
    static func faultFSMount(at path: String, in entries: [MountEntry] = current()) -> MountEntry? {
        entries.last { $0.mountPoint == path && $0.isFaultFS }
    }

    /// Whatever is mounted last at `path`.
    static func topMount(at path: String, in entries: [MountEntry] = current()) -> MountEntry? {
        entries.last { $0.mountPoint == path }
    }
}

// MARK: files and paths

/// The whole of a small file such as /proc/self/mountinfo (whose st_size is 0, so read to EOF).
func readTextFile(_ path: String) -> String? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var data: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0 && errno == EINTR { continue }
        if n < 0 { return nil }
        if n == 0 { break }
        data += chunk[0..<n]
    }
    return String(decoding: data, as: UTF8.self)
}

/// The text of an errno value.
func errnoString(_ code: Int32 = errno) -> String { String(cString: strerror(code)) }

/// A failed system call's errno.
struct SystemError: Error {
    let code: Int32
}

/// `path` resolved to an absolute path without symlinks, or the errno.
func canonicalPath(_ path: String) -> Result<String, SystemError> {
    guard let resolved = realpath(path, nil) else { return .failure(SystemError(code: errno)) }
    defer { free(resolved) }
    return .success(String(cString: resolved))
}

/// `path` made absolute and cleaned of "." and ".." without touching the
/// file system: a dead FUSE mount answers every stat with ENOTCONN, so
/// realpath cannot resolve it, yet `umount` must still name it.
func lexicalAbsolutePath(_ path: String) -> String {
    var full = path
    if !path.hasPrefix("/") {
        var cwd = "/"
        if let buffer = getcwd(nil, 0) {
            cwd = String(cString: buffer)
            free(buffer)
        }
        full = cwd + "/" + path
    }
    var parts: [Substring] = []
    for part in full.split(separator: "/") {
        switch part {
        case ".": continue
        case "..": _ = parts.popLast()
        default: parts.append(part)
        }
    }
    return "/" + parts.joined(separator: "/")
}
