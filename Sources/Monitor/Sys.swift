// Thin Glibc helpers for the monitor: whole-file reads and writes, clocks,
// device numbers, mounts. No Foundation on the sampling path (cost).
import Glibc
import MonitorCore

public enum Sys {
    /// The whole file, or nil if it cannot be opened/read. Files of /proc
    /// and /sys report size 0, so read until EOF.
    public static func read(_ path: String, limit: Int = 4 << 20) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var out: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 16384)
        while out.count < limit {
            let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 { if errno == EINTR { continue }; return out.isEmpty ? nil : String(decoding: out, as: UTF8.self) }
            if n == 0 { break }
            out += buffer[0..<n]
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Writes `text` in one write(2) (control files want one command per
    /// write). Returns nil on success, else the errno text.
    /// `create`: create or truncate (ordinary files); without it the file
    /// must exist and is not truncated (sysfs, tracefs, control files).
    @discardableResult
    public static func write(_ path: String, _ text: String, create: Bool = false) -> String? {
        let flags = O_WRONLY | O_CLOEXEC | (create ? O_CREAT | O_TRUNC : 0)
        let fd = open(path, flags, 0o644)
        guard fd >= 0 else { return errorText() }
        defer { close(fd) }
        let bytes = Array(text.utf8)
        let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        return n == bytes.count ? nil : (n < 0 ? errorText() : "short write")
    }

    public static func errorText(_ code: Int32 = errno) -> String {
        String(cString: strerror(code))
    }

    public static func exists(_ path: String) -> Bool { access(path, F_OK) == 0 }

    public static func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }

    public static func realtimeNs() -> Int64 { clockNs(CLOCK_REALTIME) }
    public static func monotonicNs() -> Int64 { clockNs(CLOCK_MONOTONIC) }

    static func clockNs(_ id: clockid_t) -> Int64 {
        var ts = timespec()
        clock_gettime(id, &ts)
        return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
    }

    public static func sleepNs(_ ns: Int64) {
        guard ns > 0 else { return }
        var ts = timespec(tv_sec: Int(ns / 1_000_000_000), tv_nsec: Int(ns % 1_000_000_000))
        var rem = timespec()
        while nanosleep(&ts, &rem) != 0 && errno == EINTR { ts = rem }
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

    /// Mount points of a file system type, from /proc/self/mounts.
    public static func mountPoints(type: String) -> [String] {
        guard let text = read("/proc/self/mounts") else { return [] }
        return text.split(separator: "\n").compactMap { line in
            let f = line.split(separator: " ")
            return f.count >= 3 && f[2] == type ? unescapeMount(f[1]) : nil
        }
    }

    /// The type of what is mounted exactly at `path`, if anything.
    public static func mountType(at path: String) -> String? {
        guard let text = read("/proc/self/mounts") else { return nil }
        var found: String?
        for line in text.split(separator: "\n") {
            let f = line.split(separator: " ")
            if f.count >= 3, unescapeMount(f[1]) == path { found = String(f[2]) }
        }
        return found
    }

    static func unescapeMount(_ s: Substring) -> String {
        s.replacingOccurrences("\\040", " ").replacingOccurrences("\\011", "\t").replacingOccurrences("\\012", "\n")
            .replacingOccurrences("\\134", "\\")
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

    /// An absolute path (relative to the working directory), without resolving links.
    public static func absolute(_ path: String) -> String {
        if path.hasPrefix("/") { return path }
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        guard getcwd(&buffer, buffer.count) != nil else { return path }
        let cwd = buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        return (cwd == "/" ? "" : cwd) + "/" + (path == "." ? "" : path)
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
        var offset = 0
        while offset < buffer.count {
            let n = buffer.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + offset, $0.count - offset) }
            if n <= 0 { if errno == EINTR { continue }; break }
            offset += n
        }
        buffer.removeAll(keepingCapacity: true)
    }
    func close() { flush(); _ = Glibc.close(fd) }
}
