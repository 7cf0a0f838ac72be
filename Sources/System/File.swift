// Whole-file reads and writes, for small files: /proc, /sys, control files,
// run folders. Not for the FUSE data path (that goes fd to fd).
import Glibc

public enum File {
    /// The whole file, at most `limit` bytes. Files of /proc and /sys report
    /// size 0, so this reads until EOF.
    public static func read(_ path: String, limit: Int = 16 << 20) throws(Errno) -> [UInt8] {
        let fd = try sysCall { open(path, O_RDONLY | O_CLOEXEC) }
        defer { close(fd) }
        return try read(fd: fd, limit: limit)
    }

    /// What is left to read from `fd` (until EOF), at most `limit` bytes.
    public static func read(fd: Int32, limit: Int = 16 << 20) throws(Errno) -> [UInt8] {
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16384)
        while out.count < limit {
            let n = try sysCall { chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) } }
            if n == 0 { break }
            out += chunk[0..<n]
        }
        return out
    }

    /// The whole file as UTF-8 text, or nil if it cannot be opened or read.
    public static func readText(_ path: String, limit: Int = 16 << 20) -> String? {
        guard let bytes = try? read(path, limit: limit) else { return nil }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Writes `text` with one write(2): control files, sysfs and tracefs
    /// take one command per write. `create`: create or truncate (ordinary
    /// files); without it the file must exist and is not truncated.
    /// A short write (which those files never do) throws EIO.
    public static func write(_ path: String, _ text: String, create: Bool = false) throws(Errno) {
        let flags = O_WRONLY | O_CLOEXEC | (create ? O_CREAT | O_TRUNC : 0)
        let fd = try sysCall { open(path, flags, 0o644) }
        defer { close(fd) }
        let bytes = Array(text.utf8)
        let n = try sysCall { bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) } }
        if n != bytes.count { throw .EIO }
    }

    /// Writes all of `bytes` to `fd`, in as many write(2)s as it takes.
    public static func writeAll(fd: Int32, _ bytes: UnsafeRawBufferPointer) throws(Errno) {
        var offset = 0
        while offset < bytes.count {
            offset += try sysCall { Glibc.write(fd, bytes.baseAddress! + offset, bytes.count - offset) }
        }
    }

    /// The names in a directory, without "." and ".."; nil if it cannot be opened.
    public static func names(inDirectory path: String) -> [String]? {
        guard let dir = opendir(path) else { return nil }
        defer { closedir(dir) }
        var names: [String] = []
        // d_name by offset: copying the 256-byte field could read past the
        // end of a short entry.
        let nameOffset = MemoryLayout<dirent>.offset(of: \dirent.d_name)!
        while let entry = readdir(dir) {
            let name = String(cString: (UnsafeRawPointer(entry) + nameOffset).assumingMemoryBound(to: CChar.self))
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }
}

/// Writes `message` to stderr in one write(2) (so lines of several threads
/// never interleave), adding the final newline if it has none.
public func printError(_ message: String) {
    var text = message
    if !text.hasSuffix("\n") { text += "\n" }
    text.withUTF8 { _ = try? File.writeAll(fd: STDERR_FILENO, UnsafeRawBufferPointer($0)) }
}
