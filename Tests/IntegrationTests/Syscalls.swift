// Thin helpers over system calls: each returns what the call returned and
// the errno it set, so a test can compare a call on the mount with the same
// call on a plain directory. Also: the Linux constants and glibc calls that
// Swift's Glibc module does not export, file/tree snapshots and data patterns.
import FaultRules
import Foundation
import Glibc

// MARK: outcomes

/// What one system call returned: its value, and errno when it failed.
struct Outcome: Equatable, CustomStringConvertible {
    var value: Int
    var errno: Int32  // 0 on success

    var ok: Bool { errno == 0 }
    var description: String { ok ? "\(value)" : "\(value) \(errnoText(errno))" }

    static let success = Outcome(value: 0, errno: 0)
}

/// Runs a call that returns -1 and sets errno on failure.
@discardableResult
func sys<T: BinaryInteger>(_ call: () -> T) -> Outcome {
    Glibc.errno = 0
    let value = Int(call())
    return Outcome(value: value, errno: value < 0 ? Glibc.errno : 0)
}

/// Turns the return value of a call that returns an errno number itself
/// (posix_fallocate, posix_memalign) into an Outcome.
func returnedErrno(_ code: Int32) -> Outcome {
    code == 0 ? .success : Outcome(value: -1, errno: code)
}

/// "ENOENT" and the like (FaultRules holds the project's errno table).
func errnoText(_ code: Int32) -> String { errnoName(code) ?? "errno \(code)" }

/// The error a helper throws when a setup step (not the thing under test) fails.
struct SetupError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
    init(_ what: String, _ outcome: Outcome) { description = "\(what): \(outcome)" }
}

/// Throws unless the call succeeded: for setup steps.
@discardableResult
func check(_ what: @autoclosure () -> String, _ outcome: Outcome) throws -> Int {
    guard outcome.ok else { throw SetupError(what(), outcome) }
    return outcome.value
}

// MARK: what Swift's Glibc module leaves out (Linux x86_64 values)

enum Linux {
    static let O_DIRECT: Int32 = 0o40000
    static let SEEK_DATA: Int32 = 3
    static let SEEK_HOLE: Int32 = 4
    static let FALLOC_FL_KEEP_SIZE: Int32 = 1
    static let FALLOC_FL_PUNCH_HOLE: Int32 = 2
    static let RENAME_NOREPLACE: UInt32 = 1
    static let RENAME_EXCHANGE: UInt32 = 2
    static let UTIME_NOW = (1 << 30) - 1
    static let UTIME_OMIT = (1 << 30) - 2
    static let XATTR_CREATE: Int32 = 1
    static let XATTR_REPLACE: Int32 = 2
}

/// glibc functions that Swift's Glibc module does not import (GNU-only or
/// from <sys/xattr.h>), looked up once by name.
private enum LibC {
    nonisolated(unsafe) static let handle = dlopen(nil, RTLD_NOW)
    static func function<F>(_ name: String, as type: F.Type) -> F {
        guard let symbol = dlsym(handle, name) else { fatalError("glibc has no \(name)") }
        return unsafeBitCast(symbol, to: type)
    }
    typealias Path = UnsafePointer<CChar>
    static let renameat2 = function("renameat2", as: (@convention(c) (Int32, Path, Int32, Path, UInt32) -> Int32).self)
    static let fallocate = function("fallocate", as: (@convention(c) (Int32, Int32, off_t, off_t) -> Int32).self)
    static let copyFileRange = function("copy_file_range",
        as: (@convention(c) (Int32, UnsafeMutablePointer<off_t>?, Int32, UnsafeMutablePointer<off_t>?, Int, UInt32) -> Int).self)
    static let setxattr = function("setxattr", as: (@convention(c) (Path, Path, UnsafeRawPointer?, Int, Int32) -> Int32).self)
    static let getxattr = function("getxattr", as: (@convention(c) (Path, Path, UnsafeMutableRawPointer?, Int) -> Int).self)
    static let listxattr = function("listxattr", as: (@convention(c) (Path, UnsafeMutablePointer<CChar>?, Int) -> Int).self)
    static let removexattr = function("removexattr", as: (@convention(c) (Path, Path) -> Int32).self)
}

func renameat2(_ from: String, _ to: String, flags: UInt32) -> Outcome {
    sys { LibC.renameat2(AT_FDCWD, from, AT_FDCWD, to, flags) }
}

func fallocate(_ fd: Int32, mode: Int32, offset: Int, length: Int) -> Outcome {
    sys { LibC.fallocate(fd, mode, off_t(offset), off_t(length)) }
}

func copyFileRange(from source: Int32, at sourceOffset: Int, to destination: Int32, at destinationOffset: Int, count: Int) -> Outcome {
    var inOffset = off_t(sourceOffset), outOffset = off_t(destinationOffset)
    return sys { LibC.copyFileRange(source, &inOffset, destination, &outOffset, count, 0) }
}

func setxattr(_ path: String, _ name: String, _ value: [UInt8], flags: Int32 = 0) -> Outcome {
    sys { value.withUnsafeBytes { LibC.setxattr(path, name, $0.baseAddress, $0.count, flags) } }
}

/// getxattr with a buffer of `size` bytes (0: ask for the size only).
func getxattr(_ path: String, _ name: String, size: Int) -> (Outcome, [UInt8]) {
    var buffer = [UInt8](repeating: 0, count: size)
    let outcome = sys { buffer.withUnsafeMutableBytes { LibC.getxattr(path, name, size == 0 ? nil : $0.baseAddress, size) } }
    return (outcome, outcome.ok ? Array(buffer.prefix(outcome.value)) : [])
}

/// The names listxattr gives, sorted.
func listxattr(_ path: String) -> (Outcome, [String]) {
    let needed = sys { LibC.listxattr(path, nil, 0) }
    guard needed.ok else { return (needed, []) }
    var buffer = [CChar](repeating: 0, count: needed.value + 1)
    let outcome = sys { LibC.listxattr(path, &buffer, needed.value) }
    let names = buffer.prefix(max(outcome.value, 0)).split(separator: 0)
        .map { String(decoding: $0.map { UInt8(bitPattern: $0) }, as: UTF8.self) }
    return (outcome, names.sorted())
}

func removexattr(_ path: String, _ name: String) -> Outcome {
    sys { LibC.removexattr(path, name) }
}

// MARK: files

func openFile(_ path: String, _ flags: Int32, _ mode: mode_t = 0o644) -> Outcome {
    sys { open(path, flags, mode) }
}

/// pwrite of all of `bytes` (one call: a short write shows as a smaller value).
@discardableResult
func pwriteBytes(_ fd: Int32, _ bytes: [UInt8], at offset: Int) -> Outcome {
    sys { bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, off_t(offset)) } }
}

/// write at the fd's position.
@discardableResult
func writeBytes(_ fd: Int32, _ bytes: [UInt8]) -> Outcome {
    sys { bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) } }
}

/// pread of up to `count` bytes, looping over short reads until EOF.
func preadBytes(_ fd: Int32, count: Int, at offset: Int) -> (Outcome, [UInt8]) {
    var buffer = [UInt8](repeating: 0, count: count)
    var done = 0
    while done < count {
        let outcome = sys { buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + done, count - done, off_t(offset + done)) } }
        if !outcome.ok { return (outcome, []) }
        if outcome.value == 0 { break }
        done += outcome.value
    }
    return (Outcome(value: done, errno: 0), Array(buffer.prefix(done)))
}

/// Creates (or truncates) `path` holding `bytes`. Throws on failure.
func writeFile(_ path: String, _ bytes: [UInt8], mode: mode_t = 0o644) throws {
    let fd = Int32(try check("open \(path)", openFile(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)))
    defer { close(fd) }
    let written = try check("write \(path)", pwriteBytes(fd, bytes, at: 0))
    guard written == bytes.count else { throw SetupError("short write to \(path): \(written) of \(bytes.count)") }
}

func writeFile(_ path: String, _ text: String, mode: mode_t = 0o644) throws {
    try writeFile(path, Array(text.utf8), mode: mode)
}

/// The whole content of `path`, or the failed call.
func readFile(_ path: String) -> Result<[UInt8], SetupError> {
    let opened = openFile(path, O_RDONLY | O_CLOEXEC)
    guard opened.ok else { return .failure(SetupError("open \(path)", opened)) }
    let fd = Int32(opened.value)
    defer { close(fd) }
    var data: [UInt8] = []
    var offset = 0
    while true {
        let (outcome, chunk) = preadBytes(fd, count: 1 << 20, at: offset)
        guard outcome.ok else { return .failure(SetupError("read \(path)", outcome)) }
        data += chunk
        offset += chunk.count
        if chunk.count < 1 << 20 { return .success(data) }
    }
}

/// Runs `body` with a buffer aligned for O_DIRECT.
func withAlignedBuffer<T>(size: Int, alignment: Int = 4096, _ body: (UnsafeMutableRawBufferPointer) throws -> T) throws -> T {
    var memory: UnsafeMutableRawPointer?
    try check("posix_memalign", returnedErrno(posix_memalign(&memory, alignment, size)))
    defer { free(memory) }
    return try body(UnsafeMutableRawBufferPointer(start: memory, count: size))
}

// MARK: attributes

/// The stat fields that must be equal between the mount and its backing
/// store or a plain directory (not inode numbers, devices or times).
struct FileSummary: Equatable, CustomStringConvertible {
    var type: mode_t
    var permissions: mode_t  // with setuid, setgid and sticky bits
    var nlink: Int
    var size: Int
    var uid: uid_t
    var gid: gid_t

    init(_ st: stat) {
        type = st.st_mode & S_IFMT
        permissions = st.st_mode & 0o7777
        nlink = Int(st.st_nlink)
        size = Int(st.st_size)
        uid = st.st_uid
        gid = st.st_gid
    }

    var isDirectory: Bool { type == S_IFDIR }

    var description: String {
        let name: String = switch type {
        case S_IFREG: "file"
        case S_IFDIR: "dir"
        case S_IFLNK: "symlink"
        case S_IFIFO: "fifo"
        default: "type \(String(type, radix: 8))"
        }
        return "\(name) \(String(permissions, radix: 8)) nlink=\(nlink) size=\(size) \(uid):\(gid)"
    }
}

/// stat (follow: true) or lstat of `path`.
func statOf(_ path: String, follow: Bool = false) -> (Outcome, stat) {
    var st = stat()
    let outcome = sys { follow ? stat(path, &st) : lstat(path, &st) }
    return (outcome, st)
}

/// The summary of `path`, or nil (recording nothing) when lstat fails.
func summary(_ path: String, follow: Bool = false) -> FileSummary? {
    let (outcome, st) = statOf(path, follow: follow)
    return outcome.ok ? FileSummary(st) : nil
}

/// The target of the symlink at `path`.
func readlinkText(_ path: String, bufferSize: Int = Int(PATH_MAX)) -> (Outcome, String) {
    var buffer = [CChar](repeating: 0, count: bufferSize)
    let outcome = sys { readlink(path, &buffer, bufferSize) }
    let text = outcome.ok ? String(decoding: buffer.prefix(outcome.value).map { UInt8(bitPattern: $0) }, as: UTF8.self) : ""
    return (outcome, text)
}

/// Sets atime and mtime (seconds, nanoseconds; Linux.UTIME_NOW/UTIME_OMIT in the nanoseconds).
func setTimes(_ path: String, atime: (Int, Int), mtime: (Int, Int), follow: Bool = true) -> Outcome {
    var times = [timespec(tv_sec: atime.0, tv_nsec: atime.1), timespec(tv_sec: mtime.0, tv_nsec: mtime.1)]
    return sys { utimensat(AT_FDCWD, path, &times, follow ? 0 : AT_SYMLINK_NOFOLLOW) }
}

// MARK: directories

struct DirectoryEntry: Hashable, Comparable, CustomStringConvertible {
    var name: String
    var type: UInt8  // d_type
    static func < (a: Self, b: Self) -> Bool { a.name < b.name }
    var description: String { "\(name)(\(type))" }
}

private let direntNameOffset = MemoryLayout<dirent>.offset(of: \dirent.d_name)!

/// The entries of `path` by opendir/readdir, without "." and "..", sorted by name.
func listDirectory(_ path: String) -> (Outcome, [DirectoryEntry]) {
    guard let dir = opendir(path) else { return (Outcome(value: -1, errno: errno), []) }
    defer { closedir(dir) }
    var entries: [DirectoryEntry] = []
    while true {
        Glibc.errno = 0
        guard let entry = readdir(dir) else {
            if Glibc.errno != 0 { return (Outcome(value: -1, errno: Glibc.errno), entries.sorted()) }
            break
        }
        // The name in place: a dirent is only as long as its name, so copying
        // the 256-byte d_name field could read past the end of the buffer.
        let name = String(cString: (UnsafeRawPointer(entry) + direntNameOffset).assumingMemoryBound(to: CChar.self))
        if name != "." && name != ".." { entries.append(DirectoryEntry(name: name, type: entry.pointee.d_type)) }
    }
    return (.success, entries.sorted())
}

/// How many entries /proc/PID/fd has: the open fds of a process.
func openFDCount(pid: pid_t) -> Int {
    listDirectory("/proc/\(pid)/fd").1.count
}

// MARK: trees

/// Everything that must survive a trip through the mount, for one path.
struct NodeSnapshot: Equatable, CustomStringConvertible {
    var summary: FileSummary
    var content: [UInt8]  // files: the bytes; symlinks: the target; else empty

    var description: String { "\(summary) content=\(content.count) bytes, fnv=\(fnv1a(content))" }
}

/// Every path under `root` (relative, root itself excluded) with its
/// snapshot; directories' sizes are left out (they depend on history).
func snapshotTree(_ root: String) throws -> [String: NodeSnapshot] {
    var result: [String: NodeSnapshot] = [:]
    var pending = [""]
    while let relative = pending.popLast() {
        let directory = relative.isEmpty ? root : root + "/" + relative
        let (listed, entries) = listDirectory(directory)
        try check("readdir \(directory)", listed)
        for entry in entries {
            let path = relative.isEmpty ? entry.name : relative + "/" + entry.name
            let full = root + "/" + path
            let (stated, st) = statOf(full)
            try check("lstat \(full)", stated)
            var node = NodeSnapshot(summary: FileSummary(st), content: [])
            switch node.summary.type {
            case S_IFDIR:
                node.summary.size = 0
                pending.append(path)
            case S_IFREG:
                node.content = try readFile(full).get()
            case S_IFLNK:
                node.content = Array(readlinkText(full).1.utf8)
            default:
                break
            }
            result[path] = node
        }
    }
    return result
}

/// Records, for a failure message, how two snapshots differ (at most `limit` paths).
func differences(_ a: [String: NodeSnapshot], _ b: [String: NodeSnapshot], names: (String, String), limit: Int = 20) -> [String] {
    var lines: [String] = []
    for path in Set(a.keys).union(b.keys).sorted() where a[path] != b[path] {
        lines.append("\(path): \(names.0) \(a[path].map(String.init(describing:)) ?? "missing"), \(names.1) \(b[path].map(String.init(describing:)) ?? "missing")")
        if lines.count == limit { break }
    }
    return lines
}

// MARK: data

/// The byte of file `file` at `offset` in verifiable data: never 0 (so a
/// zero means "never written") and different from file to file.
@inline(__always)
func patternByte(file: Int, offset: Int) -> UInt8 {
    UInt8(truncatingIfNeeded: (offset &* 31 &+ offset >> 9 &+ file &* 101) % 255 + 1)
}

func pattern(file: Int, offset: Int, count: Int) -> [UInt8] {
    (0..<count).map { patternByte(file: file, offset: offset + $0) }
}

/// FNV-1a, to print large contents short.
func fnv1a(_ bytes: [UInt8]) -> String {
    var hash: UInt64 = 0xcbf2_9ce4_8422_2325
    for byte in bytes { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
    return String(hash, radix: 16)
}

/// The first offset where two byte arrays differ (or the shorter length).
func firstDifference(_ a: [UInt8], _ b: [UInt8]) -> Int? {
    if a == b { return nil }
    return zip(a, b).enumerated().first { $0.element.0 != $0.element.1 }?.offset ?? min(a.count, b.count)
}
