// A seeded random sequence of file operations applied to a tree under the
// mount and to a shadow tree in a plain directory: every return value,
// errno, read, stat (with mtime, written data extents, hard-link identity and xattrs)
// must agree, and so must the final trees. Variants: several threads on
// disjoint subtrees; rules and a capacity armed that match nothing.
//
// Each run uses the fixed seed and a fresh one (printed). Replay a fresh
// seed with FAULTFS_DIFF_SEED=<seed> swift test --filter DifferentialTests;
// FAULTFS_DIFF_TRACE=1 also prints every compared call, step by step, and
// FAULTFS_DIFF_STEPS=N stops each run after N steps.
@testable import FaultRules
import Foundation
import Glibc
import Testing

/// Every run repeats this seed (so CI runs are comparable)...
private let fixedSeed: UInt64 = 20_260_101
/// ...and one fresh seed, printed; FAULTFS_DIFF_SEED (or the older
/// FAULTFS_SEED) replays it.
private let freshSeed: UInt64 = {
    let environment = ProcessInfo.processInfo.environment
    if let given = (environment["FAULTFS_DIFF_SEED"] ?? environment["FAULTFS_SEED"]).flatMap({ UInt64($0) }) { return given }
    let seed = UInt64.random(in: 1...UInt64(Int64.max))
    print("differential: fresh seed \(seed) (replay with FAULTFS_DIFF_SEED=\(seed))")
    return seed
}()
private let operationCount = 3_000
/// FAULTFS_DIFF_TRACE=1: print every compared call (to find what led to a mismatch).
private let tracing = ProcessInfo.processInfo.environment["FAULTFS_DIFF_TRACE"] == "1"
/// FAULTFS_DIFF_STEPS=N: stop every run (each thread) after N steps (to bisect a final-tree mismatch).
private let stepLimit = ProcessInfo.processInfo.environment["FAULTFS_DIFF_STEPS"].flatMap { Int($0) }

/// Times the test sets on purpose lie in 2001-2004; a time after the run
/// started is "recent" (the mount and the shadow never act at the same
/// nanosecond, so only the class of a recent time can be compared).
private let explicitTimeBase = 1_000_000_000

/// SplitMix64 (from FaultRules) as a RandomNumberGenerator.
struct SeededRandom: RandomNumberGenerator {
    private var base: SplitMix64
    init(seed: UInt64) { base = SplitMix64(seed: seed) }
    mutating func next() -> UInt64 { base.next() }
}

/// What Swift's Glibc module leaves out (Linux x86_64 values).
private enum More {
    static let F_OFD_GETLK: Int32 = 36
    static let F_OFD_SETLK: Int32 = 37
    static let FALLOC_FL_ZERO_RANGE: Int32 = 0x10
}

// MARK: snapshots with times, blocks, links and xattrs

/// What must agree for one path at the end: the shared summary, plus the
/// mtime class, the bytes of written data in files, the other paths of the same
/// inode, xattrs.
private struct DiffNode: Equatable, CustomStringConvertible {
    var node: NodeSnapshot
    var mtime: String
    var writtenBytes: Int?
    var sameInode: [String]
    var xattrs: [String: [UInt8]]

    var description: String {
        "\(node) mtime=\(mtime) written=\(writtenBytes.map(String.init) ?? "-") links=\(sameInode) xattrs=\(xattrs.keys.sorted())"
    }
}

/// "sec.nsec" for a time the test set, else "recent" (or "old" for a time before the run).
private func timeClass(_ time: timespec, runStart: Int) -> String {
    if time.tv_sec >= runStart - 1 { return "recent" }
    if time.tv_sec >= explicitTimeBase && time.tv_sec < explicitTimeBase + 100_000_000 { return "\(time.tv_sec).\(time.tv_nsec)" }
    return "old(\(time.tv_sec))"
}

/// The user.* xattrs of `path` (files and directories), name -> value.
private func xattrMap(_ path: String) -> [String: [UInt8]] {
    var map: [String: [UInt8]] = [:]
    for name in listxattr(path).1 { map[name] = getxattr(path, name, size: 65_536).1 }
    return map
}

/// Every path under `root` with what must agree. `mapData`: whether to
/// compare the files' written bytes (only in plain directories: FUSE has no FIEMAP).
private func diffSnapshot(_ root: String, runStart: Int, mapData: Bool) throws -> [String: DiffNode] {
    let tree = try snapshotTree(root)
    var inodes: [String: ino_t] = [:]
    var result: [String: DiffNode] = [:]
    for (path, node) in tree {
        let (_, st) = statOf(root + "/" + path)
        inodes[path] = st.st_ino
        let isFile = node.summary.type == S_IFREG
        let hasXattrs = isFile || node.summary.isDirectory
        // A fifo's mtime through the mount does not move when it is written
        // (a difference this test found, see fifoTimes): left out.
        let mtime = node.summary.type == S_IFIFO ? "-" : timeClass(st.st_mtim, runStart: runStart)
        result[path] = DiffNode(node: node, mtime: mtime,
                                writtenBytes: isFile && mapData ? writtenDataBytes(root + "/" + path) ?? -1 : nil, sameInode: [],
                                xattrs: hasXattrs ? xattrMap(root + "/" + path) : [:])
    }
    for (path, inode) in inodes where tree[path]?.summary.isDirectory == false {
        result[path]?.sameInode = inodes.filter { $0.value == inode && $0.key != path }.keys.sorted()
    }
    return result
}

private func diffLines(_ a: [String: DiffNode], _ b: [String: DiffNode], names: (String, String), limit: Int = 20) -> [String] {
    var lines: [String] = []
    for path in Set(a.keys).union(b.keys).sorted() where a[path] != b[path] {
        lines.append("\(path): \(names.0) \(a[path].map(String.init(describing:)) ?? "missing"), \(names.1) \(b[path].map(String.init(describing:)) ?? "missing")")
        if lines.count == limit { break }
    }
    return lines
}

/// The bytes of the file at `path` that hold written data (FIEMAP, after a
/// sync), or nil if it cannot be mapped.
/// Unlike st_blocks this leaves out ext4's metadata blocks: an extent-tree
/// block is needed once the data lies in more than 4 extents, and how many
/// extents it takes depends on where the allocator found free space.
/// Preallocated (unwritten) extents are left out too: they read as zeros, as
/// holes do, and with the writeback cache they may outlive a truncate that
/// would have freed them (see docs/kernel-behaviour.md, "Seen on Linux 6.18").
private func writtenDataBytes(_ path: String) -> Int? {
    let fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    // struct fiemap (32 bytes) followed by struct fiemap_extent (56 bytes each).
    let headerSize = 32, extentSize = 56, extentCapacity = 128
    let FS_IOC_FIEMAP: UInt = 0xC020_660B, FIEMAP_FLAG_SYNC: UInt32 = 1
    let FIEMAP_EXTENT_LAST: UInt32 = 0x1, FIEMAP_EXTENT_UNWRITTEN: UInt32 = 0x800
    let buffer = UnsafeMutableRawPointer.allocate(byteCount: headerSize + extentSize * extentCapacity, alignment: 8)
    defer { buffer.deallocate() }
    var total = 0, start: UInt64 = 0
    while true {
        buffer.initializeMemory(as: UInt8.self, repeating: 0, count: headerSize + extentSize * extentCapacity)
        buffer.storeBytes(of: start, toByteOffset: 0, as: UInt64.self)                   // fm_start
        buffer.storeBytes(of: UInt64.max, toByteOffset: 8, as: UInt64.self)              // fm_length
        buffer.storeBytes(of: FIEMAP_FLAG_SYNC, toByteOffset: 16, as: UInt32.self)       // fm_flags
        buffer.storeBytes(of: UInt32(extentCapacity), toByteOffset: 24, as: UInt32.self) // fm_extent_count
        guard ioctl(fd, FS_IOC_FIEMAP, buffer) == 0 else { return nil }
        let mapped = Int(buffer.load(fromByteOffset: 20, as: UInt32.self))              // fm_mapped_extents
        guard mapped > 0 else { return total }
        for index in 0..<mapped {
            let extent = headerSize + index * extentSize
            let logical = buffer.load(fromByteOffset: extent, as: UInt64.self)
            let length = buffer.load(fromByteOffset: extent + 16, as: UInt64.self)
            let flags = buffer.load(fromByteOffset: extent + 40, as: UInt32.self)
            if flags & FIEMAP_EXTENT_UNWRITTEN == 0 { total += Int(length) }
            if flags & FIEMAP_EXTENT_LAST != 0 { return total }
            start = logical + length
        }
    }
}

// MARK: the twin trees

/// The two trees and the files open on both. Used by one thread at a time;
/// mismatches are collected, and the test records them.
private final class TwinTrees: @unchecked Sendable {
    struct OpenPair { var mount: Int32; var shadow: Int32; var path: String; var flags: Int32 }

    let mountRoot: String, shadowRoot: String
    let seed: UInt64
    /// The mount's options: a few operations differ for a known reason under some.
    let options: [String]
    var random: SeededRandom
    var open: [OpenPair] = []
    private(set) var mismatches: [String] = []
    /// How many operations succeeded (to see that the run did something), by kind.
    private(set) var successes = 0
    private(set) var kinds: [String: Int] = [:]
    private var step = 0
    let runStart: Int

    init(mountRoot: String, shadowRoot: String, seed: UInt64, options: [String]) {
        self.mountRoot = mountRoot
        self.shadowRoot = shadowRoot
        self.seed = seed
        self.options = options
        random = SeededRandom(seed: seed)
        runStart = time(nil)
    }

    /// Paths come from a small name space, so that operations collide often.
    /// Directories: x, x/y, z (they may or may not exist at a given step).
    func randomDirectory() -> String { ["x", "x/y", "z"].randomElement(using: &random)! }

    /// A file name in the root or one of the directories.
    func randomFilePath() -> String {
        let directory = ["", "x/", "x/y/", "z/"].randomElement(using: &random)!
        return directory + ["a", "b", "c", "d", "e"].randomElement(using: &random)!
    }

    /// Mostly a file path, sometimes a directory (for rename, link, stat, chmod).
    func randomPath() -> String {
        Int.random(in: 0..<5, using: &random) == 0 ? randomDirectory() : randomFilePath()
    }

    func pick<T>(_ items: [T]) -> T { items.randomElement(using: &random)! }
    func below(_ n: Int) -> Int { Int.random(in: 0..<n, using: &random) }

    /// Runs `operation` on both trees (given the root) and expects equal results.
    func both<T: Equatable>(_ description: String, _ operation: (String) -> T) {
        let onMount = operation(mountRoot), onShadow = operation(shadowRoot)
        count(onMount)
        expect(onMount == onShadow, "\(description): through the mount \(onMount), in the shadow \(onShadow)")
    }

    /// Runs `operation` on the two fds of an open file and expects equal results.
    func bothFDs<T: Equatable>(_ description: String, _ pair: OpenPair, _ operation: (Int32) -> T) {
        let onMount = operation(pair.mount), onShadow = operation(pair.shadow)
        count(onMount)
        expect(onMount == onShadow, "\(description) (fd of \(pair.path)): through the mount \(onMount), in the shadow \(onShadow)")
    }

    /// Counts a success: an Outcome without errno, or a description without an errno name.
    private func count<T>(_ result: T) {
        let succeeded = (result as? Outcome)?.ok ?? (result as? String).map { !$0.contains(" E") } ?? false
        if succeeded { successes += 1 }
    }

    func expect(_ condition: Bool, _ message: @autoclosure () -> String) {
        if tracing { print("trace \(mountRoot.split(separator: "/").last ?? "") step \(step): \(message())") }
        guard !condition else { return }
        mismatches.append("seed \(seed), -o \(options), step \(step): \(message())")
    }

    // MARK: the operations

    func runStep(_ n: Int) {
        step = n
        let roll = below(124)
        let kind: String
        switch roll {
        case 0..<14: kind = "open"; openRandom()
        case 14..<20: kind = "close"; closeFile()
        case 20..<36: kind = "pwrite"; pwriteRandom()
        case 36..<40: kind = "write"; writeSequential()
        case 40..<50: kind = "read"; readRandom()
        case 50..<54: kind = "truncate"; truncateRandom()
        case 54..<58: kind = "rename"; renameRandom()
        case 58..<61: kind = "link"; linkRandom()
        case 61..<65: kind = "unlink"; unlinkRandom()
        case 65..<69: kind = "mkdir"; mkdirRandom()
        case 69..<72: kind = "rmdir"; rmdirRandom()
        case 72..<74: kind = "fsync"; fsyncRandom()
        case 74..<81: kind = "stat"; statRandom()
        case 81..<84: kind = "readdir"; listRandom()
        case 84..<86: kind = "chmod"; chmodRandom()
        case 86..<88: kind = "symlink"; symlinkRandom()
        case 88..<89: kind = "mkfifo"; mknodRandom()
        case 89..<91: kind = "chown"; chownRandom()
        case 91..<94: kind = "utimensat"; utimensRandom()
        case 94..<97: kind = "fallocate"; fallocateRandom()
        case 97..<99: kind = "copy_file_range"; copyRangeRandom()
        case 99..<101: kind = "renameat2"; renameat2Random()
        case 101..<104: kind = "lseek"; lseekRandom()
        case 104..<106: kind = "O_DIRECT"; directIORandom()
        case 106..<108: kind = "mmap"; mmapRandom()
        case 108..<110: kind = "dup"; dupRandom()
        case 110..<114: kind = "lock"; lockRandom()
        case 114..<120: kind = "xattr"; xattrRandom()
        default: kind = "readlink"; readlinkRandom()
        }
        kinds[kind, default: 0] += 1
    }

    private func openRandom() {
        if open.count >= 12 { closeFile() }
        let path = randomFilePath()
        // O_NONBLOCK: a path may be a fifo (mknod), whose open would otherwise wait for a peer.
        let flags = pick([O_RDWR | O_CREAT, O_WRONLY | O_CREAT | O_TRUNC, O_RDONLY, O_RDWR, O_RDWR | O_CREAT | O_EXCL,
                          O_WRONLY | O_APPEND | O_CREAT, O_RDWR | O_APPEND, O_RDONLY | O_NOFOLLOW, O_WRONLY | O_DIRECTORY]) | O_NONBLOCK
        let mode: mode_t = pick([0o644, 0o600, 0o755])
        let onMount = openFileAt(mountRoot, path, flags, mode), onShadow = openFileAt(shadowRoot, path, flags, mode)
        expect(onMount.ok == onShadow.ok && onMount.errno == onShadow.errno,
               "open \(path) flags=\(String(flags, radix: 8)): through the mount \(onMount), in the shadow \(onShadow)")
        if onMount.ok && onShadow.ok {
            successes += 1
            open.append(OpenPair(mount: Int32(onMount.value), shadow: Int32(onShadow.value), path: path, flags: flags))
        } else {
            if onMount.ok { Glibc.close(Int32(onMount.value)) }
            if onShadow.ok { Glibc.close(Int32(onShadow.value)) }
        }
    }

    private func openFileAt(_ root: String, _ path: String, _ flags: Int32, _ mode: mode_t) -> Outcome {
        openFile(root + "/" + path, flags | O_CLOEXEC, mode)
    }

    private func randomOpenFile() -> OpenPair? { open.randomElement(using: &random) }

    private func closeFile() {
        guard !open.isEmpty else { return }
        let pair = open.remove(at: below(open.count))
        bothFDs("close", pair) { fd in sys { Glibc.close(fd) } }
    }

    /// Mostly small offsets; sometimes far beyond EOF, making holes.
    private func randomOffset() -> Int {
        below(10) == 0 ? below(2_000_000) : below(200_000)
    }

    private func randomBytes() -> [UInt8] {
        let count = Int.random(in: 0...pick([16, 4096, 65_536]), using: &random)
        return (0..<count).map { _ in UInt8.random(in: 0...255, using: &random) }
    }

    private func pwriteRandom() {
        guard let pair = randomOpenFile() else { return openRandom() }
        let offset = randomOffset(), bytes = randomBytes()
        bothFDs("pwrite \(bytes.count) at \(offset)", pair) { pwriteBytes($0, bytes, at: offset) }
    }

    private func writeSequential() {
        guard let pair = randomOpenFile() else { return openRandom() }
        let bytes = randomBytes()
        bothFDs("write \(bytes.count)", pair) { writeBytes($0, bytes) }
    }

    /// pread through any open fd (often not the writer's), or through a
    /// fresh open of the path (reopen after close).
    private func readRandom() {
        let offset = randomOffset(), count = Int.random(in: 0...100_000, using: &random)
        if let pair = randomOpenFile(), Bool.random(using: &random) {
            bothFDs("pread \(count) at \(offset)", pair) { fd in
                let (outcome, bytes) = preadBytes(fd, count: count, at: offset)
                return "\(outcome) \(fnv1a(bytes))"
            }
        } else {
            let path = randomFilePath()
            both("open+pread \(count) at \(offset)+close \(path)") { root in
                let opened = openFile(root + "/" + path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
                guard opened.ok else { return opened.description }
                defer { Glibc.close(Int32(opened.value)) }
                let (outcome, bytes) = preadBytes(Int32(opened.value), count: count, at: offset)
                return "\(outcome) \(fnv1a(bytes))"
            }
        }
    }

    private func truncateRandom() {
        let size = below(300_000)
        if let pair = randomOpenFile(), Bool.random(using: &random) {
            bothFDs("ftruncate \(size)", pair) { fd in sys { ftruncate(fd, off_t(size)) } }
        } else {
            let path = randomPath()
            both("truncate \(path) \(size)") { root in sys { truncate(root + "/" + path, off_t(size)) } }
        }
    }

    private func renameRandom() {
        let from = randomPath(), to = randomPath()
        both("rename \(from) \(to)") { root in sys { rename(root + "/" + from, root + "/" + to) } }
    }

    private func renameat2Random() {
        let from = randomPath(), to = randomPath()
        let flags = pick([Linux.RENAME_NOREPLACE, Linux.RENAME_EXCHANGE, 0, Linux.RENAME_NOREPLACE | Linux.RENAME_EXCHANGE])
        both("renameat2 \(from) \(to) flags=\(flags)") { root in renameat2(root + "/" + from, root + "/" + to, flags: flags) }
    }

    private func linkRandom() {
        let from = randomPath(), to = randomPath()
        both("link \(from) \(to)") { root in sys { link(root + "/" + from, root + "/" + to) } }
        // Hard links are one inode: the two names agree on it through the mount as in the shadow.
        both("same inode? \(from) \(to)") { root -> String in
            let (a, sa) = statOf(root + "/" + from), (b, sb) = statOf(root + "/" + to)
            return a.ok && b.ok ? "\(sa.st_ino == sb.st_ino) nlink=\(sa.st_nlink)" : "\(a) \(b)"
        }
    }

    private func symlinkRandom() {
        // Targets resolve inside the tree ("x/../b", not "../b", which from the
        // root would reach a file the 4 threads of concurrentSubtrees share).
        let target = pick(["a", "x/../b", "x/y", "/nonexistent/target", "c/", String(repeating: "t", count: 300)])
        let path = randomFilePath()
        both("symlink \(target.prefix(20)) \(path)") { root in sys { symlink(target, root + "/" + path) } }
    }

    private func readlinkRandom() {
        let path = randomPath(), size = pick([Int(PATH_MAX), 3, 1])
        both("readlink \(path) size=\(size)") { root -> String in
            let (outcome, text) = readlinkText(root + "/" + path, bufferSize: size)
            return "\(outcome) \(text)"
        }
    }

    private func mknodRandom() {
        let path = randomFilePath()
        both("mkfifo \(path)") { root in sys { mknod(root + "/" + path, S_IFIFO | 0o644, 0) } }
    }

    private func unlinkRandom() {
        let path = randomPath()  // sometimes a directory: EISDIR
        both("unlink \(path)") { root in sys { unlink(root + "/" + path) } }
    }

    private func mkdirRandom() {
        let path = below(10) == 0 ? randomFilePath() : randomDirectory()
        both("mkdir \(path)") { root in sys { mkdir(root + "/" + path, 0o755) } }
    }

    private func rmdirRandom() {
        let path = below(10) == 0 ? randomFilePath() : randomDirectory()
        both("rmdir \(path)") { root in sys { rmdir(root + "/" + path) } }
    }

    private func fsyncRandom() {
        guard let pair = randomOpenFile() else { return }
        if Bool.random(using: &random) {
            bothFDs("fsync", pair) { fd in sys { fsync(fd) } }
        } else {
            bothFDs("fdatasync", pair) { fd in sys { fdatasync(fd) } }
        }
    }

    /// lstat (type, mode, nlink, size, owner, mtime class); fstat of an open file.
    private func statRandom() {
        let path = randomPath()
        both("lstat \(path)") { root -> String in
            let (outcome, st) = statOf(root + "/" + path)
            guard outcome.ok else { return outcome.description }
            var s = FileSummary(st)
            if s.isDirectory { s.size = 0 }  // depends on the directory's history, not on faultfs
            return "\(s) mtime=\(s.type == S_IFIFO ? "-" : timeClass(st.st_mtim, runStart: runStart))"
        }
        if let pair = randomOpenFile() {
            bothFDs("fstat", pair) { fd -> String in
                var st = stat()
                let outcome = sys { fstat(fd, &st) }
                let mtime = st.st_mode & S_IFMT == S_IFIFO ? "-" : timeClass(st.st_mtim, runStart: runStart)
                return outcome.ok ? "\(FileSummary(st)) mtime=\(mtime)" : outcome.description
            }
        }
    }

    private func listRandom() {
        let directory = Bool.random(using: &random) ? "" : randomDirectory()
        both("readdir \(directory)") { root -> String in
            let (outcome, entries) = listDirectory(root + "/" + directory)
            return "\(outcome) \(entries)"
        }
    }

    private func chmodRandom() {
        let path = randomPath(), mode: mode_t = pick([0o600, 0o644, 0o755, 0o640, 0o4755, 0o2750, 0o1777])
        both("chmod \(path) \(String(mode, radix: 8))") { root in sys { chmod(root + "/" + path, mode) } }
    }

    private func chownRandom() {
        let path = randomPath(), owner: uid_t = pick([0, 1000, 65534]), group: gid_t = pick([0, 100, 65534, gid_t.max])
        if Bool.random(using: &random) {
            both("lchown \(path) \(owner):\(Int32(bitPattern: group))") { root in sys { lchown(root + "/" + path, owner, group) } }
        } else {
            both("chown \(path) \(owner):\(Int32(bitPattern: group))") { root in sys { chown(root + "/" + path, owner, group) } }
        }
    }

    /// A time of 2001-2004, UTIME_NOW or UTIME_OMIT.
    private func randomTime() -> (Int, Int) {
        switch below(5) {
        case 0: return (0, Linux.UTIME_NOW)
        case 1: return (0, Linux.UTIME_OMIT)
        default: return (explicitTimeBase + below(100_000_000), below(1_000_000_000))
        }
    }

    private func utimensRandom() {
        let atime = randomTime(), mtime = randomTime()
        if let pair = randomOpenFile(), below(3) == 0 {
            bothFDs("futimens \(mtime)", pair) { fd in
                var times = [timespec(tv_sec: atime.0, tv_nsec: atime.1), timespec(tv_sec: mtime.0, tv_nsec: mtime.1)]
                return sys { futimens(fd, &times) }
            }
        } else {
            let path = randomPath(), follow = Bool.random(using: &random)
            both("utimensat \(path) mtime=\(mtime) follow=\(follow)") { root in setTimes(root + "/" + path, atime: atime, mtime: mtime, follow: follow) }
        }
    }

    private func fallocateRandom() {
        guard let pair = randomOpenFile() else { return }
        let mode = pick([0, Linux.FALLOC_FL_KEEP_SIZE, Linux.FALLOC_FL_PUNCH_HOLE | Linux.FALLOC_FL_KEEP_SIZE,
                         Linux.FALLOC_FL_PUNCH_HOLE, More.FALLOC_FL_ZERO_RANGE])
        let aligned = Bool.random(using: &random)
        let offset = aligned ? below(64) * 4096 : randomOffset(), length = aligned ? (1 + below(32)) * 4096 : below(100_000)
        bothFDs("fallocate mode=\(mode) \(offset)+\(length)", pair) { fd in fallocate(fd, mode: mode, offset: offset, length: length) }
    }

    private func copyRangeRandom() {
        guard let source = randomOpenFile(), let destination = randomOpenFile() else { return }
        let from = below(150_000), to = randomOffset(), length = below(100_000)
        let onMount = copyFileRange(from: source.mount, at: from, to: destination.mount, at: to, count: length)
        let onShadow = copyFileRange(from: source.shadow, at: from, to: destination.shadow, at: to, count: length)
        count(onMount)
        expect(onMount == onShadow, "copy_file_range \(source.path)@\(from) -> \(destination.path)@\(to) \(length): through the mount \(onMount), in the shadow \(onShadow)")
    }

    /// lseek of a regular file. Directory offsets are the file system's own
    /// cookies (ext4 hashes), not comparable. Where SEEK_DATA/SEEK_HOLE land
    /// depends on allocation, which differs (lseek(2) even allows calling
    /// everything data), so they are checked against the content: the mount
    /// may skip, or call a hole, only bytes that read as zeros.
    private func lseekRandom() {
        guard let pair = randomOpenFile() else { return }
        var st = stat()
        guard fstat(pair.shadow, &st) == 0, st.st_mode & S_IFMT == S_IFREG else { return }
        let whence = pick([SEEK_SET, SEEK_CUR, SEEK_END, Linux.SEEK_DATA, Linux.SEEK_HOLE])
        let offset = whence == SEEK_END || whence == SEEK_CUR ? below(20_000) - 10_000 : randomOffset()
        guard whence == Linux.SEEK_DATA || whence == Linux.SEEK_HOLE else {
            bothFDs("lseek \(offset) whence=\(whence)", pair) { fd in sys { lseek(fd, off_t(offset), whence) } }
            return
        }
        let onMount = sys { lseek(pair.mount, off_t(offset), whence) }, onShadow = sys { lseek(pair.shadow, off_t(offset), whence) }
        count(onMount)
        let size = Int(st.st_size)
        // The mount may only call "hole" what reads as zeros there.
        func zeros(_ from: Int, _ to: Int) -> Bool {
            to <= from || preadBytes(pair.mount, count: to - from, at: from).1.allSatisfy { $0 == 0 }
        }
        let allowed: Bool
        if whence == Linux.SEEK_DATA {  // nothing but zeros skipped
            allowed = onMount.ok ? onMount.value >= offset && onMount.value < size && zeros(offset, onMount.value)
                                 : onMount.errno == onShadow.errno || (onMount.errno == ENXIO && zeros(offset, size))
        } else {  // a hole (or EOF) that reads as zeros
            allowed = onMount.ok ? onMount.value >= offset && onMount.value <= size && zeros(onMount.value, min(size, (onMount.value / 4096 + 1) * 4096))
                                 : onMount.errno == onShadow.errno
        }
        expect(allowed, "lseek \(offset) whence=\(whence) on \(pair.path) (size \(size)): through the mount \(onMount), in the shadow \(onShadow)")
        // Both descriptors go on from the same position.
        let position = lseek(pair.shadow, 0, SEEK_CUR)
        _ = lseek(pair.mount, position, SEEK_SET)
    }

    /// O_DIRECT: an aligned write or read through a fresh O_DIRECT open.
    private func directIORandom() {
        let path = randomFilePath(), offset = below(64) * 4096, size = (1 + below(16)) * 4096
        // Known differences, issue 9 defects 1 and 5: O_DIRECT opens are served
        // with direct_io, so an O_DIRECT write leaves stale pages and an old mtime
        // in the kernel's caches, and with the writeback cache an O_DIRECT read
        // misses data still dirty in the page cache. Only -o direct_io (no page
        // cache) does both; -o nowriteback reads.
        let directOnly = options.contains("direct_io")
        guard directOnly || options.contains("nowriteback") else { return }
        let writing = directOnly && Bool.random(using: &random)
        let bytes = writing ? (0..<size).map { _ in UInt8.random(in: 0...255, using: &random) } : []
        both("O_DIRECT \(writing ? "pwrite" : "pread") \(size) at \(offset) \(path)") { root -> String in
            let opened = openFile(root + "/" + path, (writing ? O_RDWR | O_CREAT : O_RDONLY) | Linux.O_DIRECT | O_NONBLOCK | O_CLOEXEC)
            guard opened.ok else { return opened.description }
            let fd = Int32(opened.value)
            defer { Glibc.close(fd) }
            return (try? withAlignedBuffer(size: size) { buffer -> String in
                if writing {
                    bytes.withUnsafeBytes { buffer.copyMemory(from: $0) }
                    return sys { pwrite(fd, buffer.baseAddress, size, off_t(offset)) }.description
                }
                let outcome = sys { pread(fd, buffer.baseAddress, size, off_t(offset)) }
                return "\(outcome) \(fnv1a(Array(buffer.prefix(max(outcome.value, 0)))))"
            }) ?? "no aligned buffer"
        }
    }

    /// A shared mapping of an open file: its bytes, a store, msync.
    private func mmapRandom() {
        // mmap of an O_DIRECT open fails with ENODEV through the mount
        // (issue 9, defect 2), and so does any mmap with -o direct_io: left out.
        guard let pair = randomOpenFile(), pair.flags & Linux.O_DIRECT == 0, !options.contains("direct_io") else { return }
        // A bug this test found: with -o nowriteback an mmap store to a file
        // opened O_APPEND is appended at EOF instead of written in place (see
        // mmapStoreThroughAnAppendDescriptor below): left out until fixed.
        let appendBug = options.contains("nowriteback") && pair.flags & O_APPEND != 0
        var stMount = stat(), stShadow = stat()
        guard fstat(pair.mount, &stMount) == 0, fstat(pair.shadow, &stShadow) == 0, stMount.st_mode & S_IFMT == S_IFREG else { return }
        // Only within the file: a page past EOF would be SIGBUS.
        let length = min(Int(stMount.st_size), Int(stShadow.st_size), 65_536)
        guard length > 0 else { return }
        let store = below(length), value = UInt8.random(in: 1...255, using: &random), writable = Bool.random(using: &random) && !appendBug
        bothFDs("mmap \(length) \(writable ? "rw" : "r"), store at \(store)", pair) { fd -> String in
            guard let map = mmap(nil, length, PROT_READ | (writable ? PROT_WRITE : 0), MAP_SHARED, fd, 0), map != MAP_FAILED else {
                return Outcome(value: -1, errno: errno).description
            }
            defer { munmap(map, length) }
            let before = fnv1a(Array(UnsafeRawBufferPointer(start: map, count: length)))
            guard writable else { return "read \(before)" }
            map.storeBytes(of: value, toByteOffset: store, as: UInt8.self)
            return "read \(before), msync \(sys { msync(map, length, MS_SYNC) })"
        }
    }

    /// dup of an open file: both descriptors stay open, closed later in any order.
    private func dupRandom() {
        guard let pair = randomOpenFile(), open.count < 16 else { return }
        let onMount = sys { dup(pair.mount) }, onShadow = sys { dup(pair.shadow) }
        expect(onMount.ok == onShadow.ok, "dup: through the mount \(onMount), in the shadow \(onShadow)")
        if onMount.ok && onShadow.ok {
            open.append(OpenPair(mount: Int32(onMount.value), shadow: Int32(onShadow.value), path: pair.path + " (dup)", flags: pair.flags))
        } else {
            if onMount.ok { Glibc.close(Int32(onMount.value)) }
            if onShadow.ok { Glibc.close(Int32(onShadow.value)) }
        }
    }

    /// flock and open-file-description locks: two opens of one file conflict
    /// in one process, so the outcomes show whether locking works.
    private func lockRandom() {
        guard let pair = randomOpenFile() else { return }
        if Bool.random(using: &random) {
            let operation = pick([LOCK_SH, LOCK_EX, LOCK_UN]) | LOCK_NB
            bothFDs("flock \(operation)", pair) { fd in sys { flock(fd, operation) } }
        } else {
            let type = Int16(pick([F_RDLCK, F_WRLCK, F_UNLCK])), start = below(100), length = below(100)
            let command = pick([More.F_OFD_SETLK, More.F_OFD_GETLK])
            bothFDs("fcntl \(command == More.F_OFD_SETLK ? "F_OFD_SETLK" : "F_OFD_GETLK") type=\(type) \(start)+\(length)", pair) { fd -> String in
                var lock = flock()
                lock.l_type = type
                lock.l_whence = Int16(SEEK_SET)
                lock.l_start = off_t(start)
                lock.l_len = off_t(length)
                let outcome = sys { fcntl(fd, command, &lock) }
                return command == More.F_OFD_GETLK && outcome.ok ? "\(outcome) type=\(lock.l_type) \(lock.l_start)+\(lock.l_len) pid=\(lock.l_pid)" : outcome.description
            }
        }
    }

    private func xattrRandom() {
        let path = randomPath(), name = pick(["user.a", "user.b", "user.long." + String(repeating: "n", count: 200), "trusted.t", "bad.namespace"])
        switch below(4) {
        case 0:
            let value = (0..<pick([0, 10, 3000])).map { _ in UInt8.random(in: 0...255, using: &random) }
            let flags = pick([0, Linux.XATTR_CREATE, Linux.XATTR_REPLACE])
            both("setxattr \(path) \(name.prefix(12)) \(value.count) bytes flags=\(flags)") { root in setxattr(root + "/" + path, name, value, flags: flags) }
        case 1:
            let size = pick([0, 65_536, 5])
            both("getxattr \(path) \(name.prefix(12)) size=\(size)") { root -> String in
                let (outcome, value) = getxattr(root + "/" + path, name, size: size)
                return "\(outcome) \(fnv1a(value))"
            }
        case 2:
            both("listxattr \(path)") { root -> String in
                let (outcome, names) = listxattr(root + "/" + path)
                return "\(outcome) \(names)"
            }
        default:
            both("removexattr \(path) \(name.prefix(12))") { root in removexattr(root + "/" + path, name) }
        }
    }

    func closeAll() {
        for pair in open {
            bothFDs("close at the end", pair) { fd in sys { Glibc.close(fd) } }
        }
        open = []
    }
}

// MARK: the tests

/// What one run did, printed.
private func report(_ trees: TwinTrees, _ label: String) {
    let kinds = trees.kinds.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
    print("differential \(label) (seed \(trees.seed), -o \(trees.options)): \(trees.successes) operations succeeded; \(kinds)")
}

/// Runs `body` with SIGPIPE ignored: a write to a fifo whose reader was
/// closed must fail with EPIPE (on both sides), not kill the test process.
private func ignoringSIGPIPE<T>(_ body: () throws -> T) rethrows -> T {
    let previous = signal(SIGPIPE, SIG_IGN)
    defer { signal(SIGPIPE, previous) }
    return try body()
}

/// Runs `count` steps (stopping after 5 mismatches: later steps would only echo them).
private func runSteps(_ trees: TwinTrees, count: Int) {
    for step in 0..<min(count, stepLimit ?? count) {
        trees.runStep(step)
        if trees.mismatches.count >= 5 {
            trees.expect(false, "stopped after 5 mismatches")
            break
        }
    }
    trees.closeAll()
}

/// Compares the final trees through the mount and in the shadow, and (after
/// the unmount) the backing dir with the shadow.
private func compareFinalTrees(_ fs: MountedFS, shadow: String, subtrees: [String], seedText: String, runStart: Int) throws {
    var total = 0
    for subtree in subtrees {
        let throughMount = try diffSnapshot(fs.path(subtree), runStart: runStart, mapData: false)
        let inShadow = try diffSnapshot(shadow + "/" + subtree, runStart: runStart, mapData: false)
        total += throughMount.count
        for line in diffLines(throughMount, inShadow, names: ("mount", "shadow")) {
            Issue.record("\(seedText), final tree: \(line)")
        }
    }
    #expect(total > 3 * subtrees.count, "\(seedText): the random trees are nearly empty")

    #expect(fs.unmount().isEmpty, "\(seedText): unmount failed")
    for subtree in subtrees {
        // The backing files' mtimes may differ from what the mount showed
        // (issue 9, defect 5: times change across a remount): compared without.
        var backing = try diffSnapshot(fs.backing(subtree), runStart: runStart, mapData: true)
        var inShadow = try diffSnapshot(shadow + "/" + subtree, runStart: runStart, mapData: true)
        for key in backing.keys { backing[key]?.mtime = "" }
        for key in inShadow.keys { inShadow[key]?.mtime = "" }
        // Written data: the writeback cache writes whole pages, fallocate and
        // punch hole round to blocks, so what must agree is whether the file
        // has holes (written data 64 KiB short of its size; preallocated
        // extents count as holes, see `writtenDataBytes`: seed
        // 7511155514393534407 kept 36 KiB preallocated past a truncate on
        // the backing side and ended with it inside the file). Counted from
        // FIEMAP, not st_blocks: st_blocks adds ext4's extent-tree block,
        // needed or not depending on how fragmented the free space was, so
        // equal data on both sides could land 4 KiB either side of the line
        // (seed 4898624007613814642: a 258,849-byte file with 192,512 data
        // bytes on both sides had st_blocks 376 on one side, 384 on the other).
        for (key, node) in backing {
            guard let written = node.writtenBytes, let other = inShadow[key]?.writtenBytes, written >= 0, other >= 0 else { continue }
            let size = node.node.summary.size
            backing[key]?.writtenBytes = written + 65_536 < size ? 1 : 0
            inShadow[key]?.writtenBytes = other + 65_536 < size ? 1 : 0
        }
        for line in diffLines(backing, inShadow, names: ("backing dir after unmount", "shadow")) {
            Issue.record("\(seedText), backing tree \(subtree): \(line)")
        }
    }
}

extension AllMountTests {
    @Suite(.timeLimit(.minutes(10)))
    struct DifferentialTests {
        @Test("3,000 random operations agree with a plain directory, call by call and in the final tree",
              arguments: [[], ["nowriteback"], ["direct_io"]], [fixedSeed, freshSeed])
        func randomOperations(options: [String], seed: UInt64) throws {
            try ignoringSIGPIPE { try withMount(options: options) { fs in
                try withTemporaryDirectory("shadow") { shadow in
                    umask(0o022)
                    let trees = TwinTrees(mountRoot: fs.path("tree"), shadowRoot: shadow + "/tree", seed: seed, options: options)
                    try check("mkdir", sys { mkdir(trees.mountRoot, 0o755) })
                    try check("mkdir", sys { mkdir(trees.shadowRoot, 0o755) })
                    runSteps(trees, count: operationCount)
                    report(trees, "one thread")
                    for mismatch in trees.mismatches { Issue.record(Comment(rawValue: mismatch)) }
                    try compareFinalTrees(fs, shadow: shadow, subtrees: ["tree"], seedText: "seed \(seed), -o \(options)", runStart: trees.runStart)
                }
            } }
        }

        @Test("4 threads, each with its own subtree: every call agrees with a plain directory", arguments: [fixedSeed, freshSeed])
        func concurrentSubtrees(seed: UInt64) throws {
            try ignoringSIGPIPE { try withMount { fs in
                try withTemporaryDirectory("shadow") { shadow in
                    umask(0o022)
                    let subtrees = (0..<4).map { "t\($0)" }
                    let allTrees = try subtrees.enumerated().map { index, subtree in
                        let trees = TwinTrees(mountRoot: fs.path(subtree), shadowRoot: shadow + "/" + subtree,
                                              seed: seed &+ UInt64(index) &* 0x9E37_79B9, options: [])
                        try check("mkdir", sys { mkdir(trees.mountRoot, 0o755) })
                        try check("mkdir", sys { mkdir(trees.shadowRoot, 0o755) })
                        return trees
                    }
                    let workers = allTrees.map { trees in BackgroundCall { runSteps(trees, count: 1_500); return true } }
                    for (index, worker) in workers.enumerated() {
                        #expect(fs.finish(worker, "differential thread \(index)", within: 300) == true)
                    }
                    for trees in allTrees {
                        report(trees, "thread")
                        for mismatch in trees.mismatches { Issue.record(Comment(rawValue: mismatch)) }
                    }
                    try compareFinalTrees(fs, shadow: shadow, subtrees: subtrees, seedText: "seed \(seed) (4 threads)", runStart: allTrees[0].runStart)
                }
            } }
        }

        // Two differences the random runs found, each reduced to its smallest
        // case. Marked known issues (reported in issue 16): once fixed, the
        // "known issue was not recorded" failure says to drop the marker.

        @Test("-o nowriteback: an mmap store to a file opened O_APPEND lands in place, not appended")
        func mmapStoreThroughAnAppendDescriptor() throws {
            try withMount(options: ["nowriteback"]) { fs in
                let fd = try openOrThrow(fs.path("f"), O_RDWR | O_CREAT | O_APPEND)
                defer { close(fd) }
                #expect(writeBytes(fd, [UInt8](repeating: UInt8(ascii: "x"), count: 10_000)).value == 10_000)
                guard let map = mmap(nil, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), map != MAP_FAILED else {
                    throw SetupError("mmap", Outcome(value: -1, errno: errno))
                }
                map.storeBytes(of: UInt8(ascii: "A"), toByteOffset: 100, as: UInt8.self)
                #expect(sys { msync(map, 8192, MS_SYNC) }.ok)
                munmap(map, 8192)
                let backing = try backingBytes(fs, "f")
                #expect(backing.count == 10_000, "the store grew the file to \(backing.count) bytes")
                #expect(backing.count > 100 && backing[100] == UInt8(ascii: "A"), "the store is not in place")
            }
        }

        @Test("writing to a fifo moves its mtime, through the mount as in a plain directory")
        func fifoTimes() throws {
            try withMount { fs in
                try withTemporaryDirectory("shadow") { shadow in
                    let runStart = time(nil)
                    var seen: [String] = []
                    for root in [fs.mountpoint, shadow] {
                        try check("mkfifo", sys { mknod(root + "/p", S_IFIFO | 0o644, 0) })
                        try check("utimensat", setTimes(root + "/p", atime: (explicitTimeBase, 0), mtime: (explicitTimeBase, 0)))
                        let fd = try openOrThrow(root + "/p", O_RDWR | O_NONBLOCK)
                        #expect(writeBytes(fd, [1]).value == 1)
                        seen.append(timeClass(statOf(root + "/p").1.st_mtim, runStart: runStart))
                        close(fd)
                    }
                    #expect(seen[1] == "recent", "in the plain directory: \(seen[1])")
                    withKnownIssue("faultfs difference: the fifo's mtime through the mount stays where utimensat put it") {
                        #expect(seen[0] == seen[1], "through the mount \(seen[0]), in the plain directory \(seen[1])")
                    }
                }
            }
        }

        /// Rules that never match this workload (other paths, names, pids, a
        /// count never reached) and a capacity far above it: nothing may change.
        static let nonMatchingRules = [
            "fail write EIO path=nomatch/**", "fail all EIO path=__nomatch__/**", "fail fsync EIO comm=nosuchcomm",
            "delay read 2s pid=1", "stall writeback path=never.stall", "drop writeback path=nomatch/**",
            "short syncwrite bytes=1 path=nomatch/**", "fail writeback,flush,fsync ENOSPC after=100000000",
            "fail open,create,mkdir,unlink,rename EACCES path=**/zz", "capacity 1T",
        ]

        @Test("with rules armed that match nothing, 3,000 random operations still agree and nothing is injected",
              arguments: [[], ["nowriteback"]], [fixedSeed, freshSeed])
        func nonMatchingRulesChangeNothing(options: [String], seed: UInt64) throws {
            try ignoringSIGPIPE { try withMount(options: options) { fs in
                try withTemporaryDirectory("shadow") { shadow in
                    umask(0o022)
                    try fs.arm(Self.nonMatchingRules.joined(separator: "\n"))
                    #expect(fs.ruleLines().count == Self.nonMatchingRules.count - 1, "\(fs.controlText())")
                    let trees = TwinTrees(mountRoot: fs.path("tree"), shadowRoot: shadow + "/tree", seed: seed, options: options)
                    try check("mkdir", sys { mkdir(trees.mountRoot, 0o755) })
                    try check("mkdir", sys { mkdir(trees.shadowRoot, 0o755) })
                    // A stall that matched by mistake would hang the run: bounded.
                    let worker = BackgroundCall { runSteps(trees, count: operationCount); return true }
                    #expect(fs.finish(worker, "the differential run under non-matching rules", within: 300) == true)
                    report(trees, "armed")
                    for mismatch in trees.mismatches { Issue.record(Comment(rawValue: mismatch)) }
                    // (Setting the capacity is itself an event, action "capacity".)
                    let injected = fs.events().filter { $0.action != "capacity" }
                    #expect(injected.isEmpty, "rules that match nothing injected: \(injected.prefix(5))")
                    try compareFinalTrees(fs, shadow: shadow, subtrees: ["tree"], seedText: "seed \(seed), -o \(options), rules armed",
                                          runStart: trees.runStart)
                }
            } }
        }
    }
}
