// Block mode's `file=GLOB`: the data blocks of the files a glob names, as
// byte ranges of the image, and the re-resolver that keeps a `file=` rule's
// ranges current while it is armed, so that data written after arming (new
// files, appends, delayed allocation) is caught too.
//
// The re-resolver runs in the daemon that serves the image, on a thread of
// its own, never in a FUSE handler: FIEMAP and fallocate on the inner file
// system may wait for that file system's writeback or journal commit, which
// waits for the handlers. No handler ever waits for the re-resolver.
import System
import FaultRules
import Glibc
import Synchronization

enum FileBlocks {
    /// The data blocks of the regular files `pattern` (relative to `target`)
    /// names, via FIEMAP. Data still waiting for delayed allocation (ext4
    /// and XFS allocate at writeback) has no place on the disk yet: those
    /// ranges are allocated now with fallocate(KEEP_SIZE), which writes
    /// nothing and changes neither size nor content, so the writeback that
    /// follows lands in blocks the rule covers; mtime is put back (ctime
    /// moves). `strict` (the CLI, at arming) refuses what the re-resolver
    /// skips: a file of another mount below the target, a file it cannot open.
    static func resolve(target: String, pattern: String, strict: Bool) throws(BlockRuleError) -> ByteRangeSet {
        var matches = glob_t()
        defer { globfree(&matches) }
        let found = glob(target + "/" + pattern, GLOB_NOSORT, nil, &matches)
        guard found == 0 else {
            if found == GLOB_NOMATCH { return ByteRangeSet([]) }
            throw BlockRuleError("file=\(pattern): cannot list the files under \(target) (glob error \(found))")
        }
        var targetInfo = stat()
        guard stat(target, &targetInfo) == 0 else { throw BlockRuleError("\(target): \(Errno.current.description)") }
        var pairs: [(lower: Int64, upper: Int64)] = []
        for i in 0..<Int(matches.gl_pathc) {
            guard let cPath = matches.gl_pathv[i] else { continue }
            let path = String(cString: cPath)
            var info = stat()
            guard lstat(path, &info) == 0, info.st_mode & S_IFMT == S_IFREG else { continue }
            // A file of another mount below the target has its blocks on another disk.
            guard info.st_dev == targetInfo.st_dev else {
                if strict { throw BlockRuleError("file=\(pattern): \(path) is on another file system mounted below \(target)") }
                continue
            }
            do throws(FileError) {
                pairs += try blocks(ofFile: path, info).map { ($0.physical, $0.physical + $0.length) }
            } catch {
                // The re-resolver skips a file deleted meanwhile; any other
                // failure ends the pass, so the rule keeps its last ranges
                // rather than losing this file's.
                if strict || error.errno != ENOENT { throw BlockRuleError(error.message) }
            }
        }
        return ByteRangeSet(pairs)
    }

    /// Whether the directory part of `pattern` (before its last `/`) names a
    /// directory now: `dir/*` may name files to come, a pattern naming no
    /// directory is a mistake.
    static func hasDirectory(target: String, pattern: String) -> Bool {
        guard let slash = pattern.lastIndex(of: "/") else { return false }
        var matches = glob_t()
        defer { globfree(&matches) }
        return glob(target + "/" + pattern[..<slash], GLOB_ONLYDIR | GLOB_NOSORT, nil, &matches) == 0 && matches.gl_pathc > 0
    }

    private static func blocks(ofFile path: String, _ info: stat) throws(FileError) -> [Extent] {
        let fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW | 0o1000000 /* O_NOATIME */)
        guard fd >= 0 else { throw FileError("\(path): \(Errno.current.description)") }
        defer { close(fd) }
        var extents = try fileExtents(fd, path)
        let delayed = extents.filter(\.delayed)
        if !delayed.isEmpty {
            // fallocate moves mtime and ctime; mtime is put back (ctime cannot be).
            var times = [timespec(tv_sec: 0, tv_nsec: (1 << 30) - 2 /* UTIME_OMIT */), info.st_mtim]
            defer { _ = futimens(fd, &times) }
            for extent in delayed where csys_fallocate(fd, 1 /* FALLOC_FL_KEEP_SIZE */, off_t(extent.logical), off_t(extent.length)) != 0 {
                throw FileError("\(path): allocating its delayed data (fallocate): \(Errno.current.description)")
            }
            extents = try fileExtents(fd, path)
        }
        return extents.filter { !$0.delayed }
    }

    /// A failure on one file, with its errno (taken right after the call).
    private struct FileError: Error {
        let message: String
        let errno: Int32
        init(_ message: @autoclosure () -> String) {
            errno = Glibc.errno
            self.message = message()
        }
    }

    private struct Extent {
        var logical: Int64, physical: Int64, length: Int64
        /// Not on the disk yet (delayed allocation): `physical` means nothing.
        var delayed: Bool
    }

    /// FIEMAP without FIEMAP_FLAG_SYNC (that would write the dirty data
    /// before the rule is armed). Extents with no usable place (inline,
    /// encoded, encrypted) are left out.
    private static func fileExtents(_ fd: Int32, _ path: String) throws(FileError) -> [Extent] {
        // struct fiemap (32 bytes) then fm_extent_count struct fiemap_extent (56 bytes each).
        let perCall = 256, headerSize = 32, extentSize = 56
        let fsIocFiemap: UInt = 0xC020_660B
        let extentLast: UInt32 = 0x1, extentDelayed: UInt32 = 0x4
        let unusable: UInt32 = 0x8 | 0x80 | 0x200  // encoded, encrypted, inline
        var buffer = [UInt8](repeating: 0, count: headerSize + perCall * extentSize)
        var start: UInt64 = 0
        var extents: [Extent] = []
        while true {
            let mapped: Int = buffer.withUnsafeMutableBytes { raw -> Int in
                raw.initializeMemory(as: UInt8.self, repeating: 0)
                raw.storeBytes(of: start, toByteOffset: 0, as: UInt64.self)
                raw.storeBytes(of: UInt64.max - start, toByteOffset: 8, as: UInt64.self)
                raw.storeBytes(of: UInt32(perCall), toByteOffset: 24, as: UInt32.self)
                guard ioctl(fd, fsIocFiemap, raw.baseAddress!) == 0 else { return -1 }
                return Int(raw.load(fromByteOffset: 20, as: UInt32.self))
            }
            if mapped < 0 { throw FileError("FIEMAP on \(path): \(Errno.current.description)") }
            if mapped == 0 { return extents }
            var last = false
            for i in 0..<mapped {
                let base = headerSize + i * extentSize
                let (logical, physical, length, flags) = buffer.withUnsafeBytes {
                    ($0.load(fromByteOffset: base, as: UInt64.self), $0.load(fromByteOffset: base + 8, as: UInt64.self),
                     $0.load(fromByteOffset: base + 16, as: UInt64.self), $0.load(fromByteOffset: base + 40, as: UInt32.self))
                }
                if flags & unusable == 0 {
                    extents.append(Extent(logical: Int64(logical), physical: Int64(physical), length: Int64(length),
                                          delayed: flags & extentDelayed != 0))
                }
                start = logical + length
                if flags & extentLast != 0 { last = true }
            }
            if last { return extents }
        }
    }
}

/// An armed `file=` rule as `faultfs ctl` leaves it for the daemon: the
/// file `<state>/file-rules/<rule id>` holding the target and the glob, one
/// a line. The CLI writes it before the rule's control line and removes it
/// on `clear`; the daemon removes it once its rule is gone.
struct FileRuleRecord: Equatable {
    var ruleID: String
    var target: String
    var pattern: String

    static func directory(ofState state: String) -> String { state + "/file-rules" }

    func write(inState state: String) throws(CLIError) {
        let directory = Self.directory(ofState: state)
        if mkdir(directory, 0o755) != 0 && errno != EEXIST { throw CLIError("mkdir \(directory): \(Errno.current.description)") }
        // Whole or not at all: the daemon may read it at any moment.
        let path = directory + "/" + ruleID
        try writeWholeFile(path + ".new", target + "\n" + pattern + "\n")
        guard rename(path + ".new", path) == 0 else { throw CLIError("rename \(path).new: \(Errno.current.description)") }
    }

    /// Every record, with its file's age in seconds.
    static func all(inState state: String) -> [(record: FileRuleRecord, age: Int)] {
        let directory = directory(ofState: state)
        var found: [(record: FileRuleRecord, age: Int)] = []
        for name in directoryEntries(directory) where !name.hasSuffix(".new") {
            var info = stat()
            guard let text = File.readText(directory + "/" + name), stat(directory + "/" + name, &info) == 0 else { continue }
            let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
            guard lines.count >= 2 else { continue }
            found.append((FileRuleRecord(ruleID: name, target: String(lines[0]), pattern: String(lines[1])),
                          time(nil) - info.st_mtim.tv_sec))
        }
        return found
    }

    static func remove(ruleID: String?, inState state: String) {
        let directory = directory(ofState: state)
        for name in directoryEntries(directory) where ruleID == nil || name == ruleID {
            unlink(directory + "/" + name)
        }
    }

    private static func directoryEntries(_ path: String) -> [String] {
        guard let dir = opendir(path) else { return [] }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }
}

/// The daemon's re-resolver: while a `file=` rule is armed, every `period`
/// it resolves the rule's glob again (FIEMAP of each matching file, plus
/// fallocate(KEEP_SIZE) of ranges waiting for delayed allocation) and, if
/// the blocks changed, swaps the rule's ranges in the engine (counters
/// kept). The thread runs only while some record exists; a control write
/// wakes it.
///
/// Not caught (the race): data allocated and written within one period,
/// e.g. a file created, written and fsynced in less than `period`: its
/// blocks are allocated at the fsync's writeback, before the next pass
/// sees them. Closing it would mean making a handler wait for a pass, and
/// a pass may need that very handler (see the top of this file).
final class BlockResolver: Sendable {
    /// 100 ms: short next to a database's checkpoint or commit interval; a
    /// pass costs about 50 µs per matching file (debug build), so 100 files
    /// cost about 5% of a core (README, "Block mode").
    static let periodNanoseconds: UInt64 = 100_000_000

    private let engine: RuleEngine
    private let state: String
    private let control = Mutex<(running: Bool, stopping: Bool)>((false, false))

    private init(engine: RuleEngine, state: String) {
        self.engine = engine
        self.state = state
    }

    /// For the daemon serving `mountpoint`: a resolver when that is the
    /// faultfs mount of a block-mode state directory (`faultfs mount --fs`),
    /// nil otherwise (a loop device attached by hand: `file=` is resolved
    /// once, at arming).
    static func forMount(_ mountpoint: String, engine: RuleEngine) -> BlockResolver? {
        BlockState(imageMount: mountpoint).map { BlockResolver(engine: engine, state: $0.directory) }
    }

    /// After every control write: starts the thread if a record waits for it.
    func wake() {
        control.withLock { control in
            guard !control.running, !control.stopping, !FileRuleRecord.all(inState: state).isEmpty else { return }
            control.running = true
            startThread { [self] in run() }
        }
    }

    /// At unmount: the thread ends after its current pass.
    func stop() {
        control.withLock { $0.stopping = true }
    }

    private func run() {
        while true {
            let records = control.withLock { control -> [(record: FileRuleRecord, age: Int)]? in
                let records = FileRuleRecord.all(inState: state)
                if control.stopping || records.isEmpty {
                    control.running = false
                    return nil
                }
                return records
            }
            guard let records else { return }
            for (record, age) in records {
                guard let ranges = try? FileBlocks.resolve(target: record.target, pattern: record.pattern, strict: false)
                else { continue }  // the target is going away; the next pass tells
                // Its rule gone: the CLI removes the record at `clear`; this
                // catches the rest (the CLI writes the record just before the rule).
                if !engine.replaceByteRanges(ofRule: record.ruleID, with: ranges), age > 2 {
                    FileRuleRecord.remove(ruleID: record.ruleID, inState: state)
                }
            }
            SystemClock.sleep(nanoseconds: Int64(Self.periodNanoseconds))
        }
    }
}
