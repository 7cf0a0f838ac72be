// The monitor's own Glibc helpers (device numbers, pseudo file systems,
// directories); files, clocks and the mount table are System's. No
// Foundation on the sampling path (cost).
import Glibc
import System
import MonitorCore

public enum Sys {
    /// `File.write`, answering nil or the reason as text (for notes and messages).
    @discardableResult
    public static func write(_ path: String, _ text: String, create: Bool = false) -> String? {
        do { try File.write(path, text, create: create); return nil } catch { return error.description }
    }

    public static func exists(_ path: String) -> Bool { access(path, F_OK) == 0 }

    public static func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }

    /// The st_dev of a path as the kernel prints it ("0:39").
    public static func device(of path: String) -> DeviceID? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        let d = UInt64(st.st_dev)
        let major = UInt32(((d >> 8) & 0xfff) | ((d >> 32) & ~UInt64(0xfff)))
        let minor = UInt32((d & 0xff) | ((d >> 12) & ~UInt64(0xff)))
        return DeviceID(major: major, minor: minor)
    }

    /// mount(2) of a pseudo file system (tracefs, debugfs, fusectl).
    public static func mountPseudo(type: String, at path: String) -> Bool {
        Glibc.mount(type == "fusectl" ? "fusectl" : "nodev", path, type, 0, nil) == 0
    }

    public static func unmount(_ path: String) -> Bool { umount2(path, 0) == 0 }

    /// Kernel release ("6.18.44").
    public static func kernelRelease() -> String {
        var u = utsname()
        uname(&u)
        return withUnsafeBytes(of: u.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    }

    public static func pageSize() -> Int64 { Int64(sysconf(Int32(_SC_PAGESIZE))) }

    /// A directory for a run's files: created with parents as needed.
    public static func makeDirectories(_ path: String) -> Bool {
        var current = path.hasPrefix("/") ? "" : "."
        for part in path.split(separator: "/") {
            current += "/" + part
            if mkdir(current, 0o755) != 0 && errno != EEXIST { return false }
        }
        return isDirectory(path)
    }
}

extension StringProtocol {
    func replacingOccurrences(_ target: String, _ replacement: String) -> String {
        guard !target.isEmpty else { return String(self) }
        var out = ""
        var rest = Substring(self)
        while let r = rest.firstRange(of: target) {
            out += rest[..<r.lowerBound]
            out += replacement
            rest = rest[r.upperBound...]
        }
        out += rest
        return out
    }
}

/// A line-buffered appender (run folder files). Not thread-safe by itself.
final class FileAppender {
    private let fd: Int32
    private var buffer: [UInt8] = []
    init?(_ path: String, truncate: Bool = true) {
        fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | (truncate ? O_TRUNC : O_APPEND), 0o644)
        if fd < 0 { return nil }
    }
    func line(_ text: String) {
        buffer += text.utf8
        buffer.append(10)
        if buffer.count > 64 * 1024 { flush() }
    }
    func flush() {
        buffer.withUnsafeBytes { _ = try? File.writeAll(fd: fd, $0) }
        buffer.removeAll(keepingCapacity: true)
    }
    func close() { flush(); _ = Glibc.close(fd) }
}
