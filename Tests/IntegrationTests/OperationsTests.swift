// Every FUSE operation the passthrough implements, checked the same way: a
// script of system calls runs once in a directory under the mount and once
// in a plain directory, and both runs must give the same transcript (return
// values, errno, stat fields, contents, listings).
import Foundation
import Glibc
import Testing

// MARK: the comparison

/// What one run of a script did, line by line. Paths given to it are
/// relative to its directory, so the two runs' lines can be compared.
final class Transcript {
    let directory: String
    private(set) var lines: [String] = []
    private var openFDs: [Int32] = []

    init(directory: String) { self.directory = directory }

    func path(_ relative: String) -> String { relative.isEmpty ? directory : directory + "/" + relative }

    /// Records a call's outcome; returns it.
    @discardableResult
    func call(_ label: String, _ outcome: Outcome) -> Outcome {
        lines.append("\(label) -> \(outcome)")
        return outcome
    }

    func record(_ label: String, _ value: Any) {
        lines.append("\(label) = \(value)")
    }

    /// open(2); records success or errno (not the fd number), returns the fd
    /// or -1. Fds still open are closed by `closeAll`.
    @discardableResult
    func open(_ relative: String, _ flags: Int32, _ mode: mode_t = 0o644) -> Int32 {
        let outcome = openFile(path(relative), flags | O_CLOEXEC, mode)
        lines.append("open \(relative) flags=\(String(flags, radix: 8)) -> \(outcome.ok ? "fd" : outcome.description)")
        if outcome.ok { openFDs.append(Int32(outcome.value)) }
        return outcome.ok ? Int32(outcome.value) : -1
    }

    func close(_ fd: Int32, _ label: String = "close") {
        openFDs.removeAll { $0 == fd }
        call(label, sys { Glibc.close(fd) })
    }

    func closeAll() {
        for fd in openFDs { Glibc.close(fd) }
        openFDs = []
    }

    /// Creates `relative` holding `text` (open, write, close, each recorded).
    func create(_ relative: String, _ bytes: [UInt8], mode: mode_t = 0o644) {
        let fd = open(relative, O_WRONLY | O_CREAT | O_TRUNC, mode)
        guard fd >= 0 else { return }
        call("write \(relative)", pwriteBytes(fd, bytes, at: 0))
        close(fd, "close \(relative)")
    }

    func create(_ relative: String, _ text: String, mode: mode_t = 0o644) { create(relative, Array(text.utf8), mode: mode) }

    /// Records the lstat (or stat) summary of `relative`, or its errno.
    func stat(_ relative: String, follow: Bool = false) {
        let (outcome, st) = statOf(path(relative), follow: follow)
        record("\(follow ? "stat" : "lstat") \(relative)", outcome.ok ? FileSummary(st).description : outcome.description)
    }

    /// Records the whole content of `relative` (short ones as text).
    func content(_ relative: String) {
        switch readFile(path(relative)) {
        case .success(let bytes): record("content \(relative)", describe(bytes))
        case .failure(let error): record("content \(relative)", error.description.replacingOccurrences(of: directory, with: "."))
        }
    }

    /// Records bytes read some other way.
    func bytes(_ label: String, _ bytes: [UInt8]) { record(label, describe(bytes)) }

    private func describe(_ bytes: [UInt8]) -> String {
        bytes.count <= 64 && bytes.allSatisfy({ $0 >= 32 && $0 < 127 })
            ? "\"\(String(decoding: bytes, as: UTF8.self))\""
            : "\(bytes.count) bytes fnv=\(fnv1a(bytes))"
    }

    /// Records exact atime and mtime (after setting them explicitly).
    func times(_ relative: String, follow: Bool = false) {
        let (outcome, st) = statOf(path(relative), follow: follow)
        record("times \(relative)", outcome.ok ? "atime=\(st.st_atim.tv_sec).\(st.st_atim.tv_nsec) mtime=\(st.st_mtim.tv_sec).\(st.st_mtim.tv_nsec)" : outcome.description)
    }

    /// Records which way the mtime of `relative` moved since `earlier` (seconds).
    func mtimeMoved(_ relative: String, since earlier: Int) {
        let (outcome, st) = statOf(path(relative))
        let direction = st.st_mtim.tv_sec > earlier ? "later" : st.st_mtim.tv_sec == earlier ? "same" : "earlier"
        record("mtime of \(relative) since \(earlier)", outcome.ok ? direction : outcome.description)
    }
}

/// Mounts a fresh faultfs, runs `script` in a directory under the mount and
/// in a plain directory, and expects both transcripts to be equal.
func compareWithPlainDirectory(options: [String] = [], sourceLocation: SourceLocation = #_sourceLocation,
                               _ script: (Transcript) throws -> Void) throws {
    try withMount(options: options) { fs in
        try withTemporaryDirectory("plain") { plain in
            let onMount = try run(script, in: fs.path("case"))
            let onPlain = try run(script, in: plain + "/case")
            expectEqual(onMount, onPlain, log: fs.log, sourceLocation: sourceLocation)
        }
    }
}

private func run(_ script: (Transcript) throws -> Void, in directory: String) throws -> Transcript {
    try check("mkdir \(directory)", sys { mkdir(directory, 0o755) })
    umask(0o022)
    let transcript = Transcript(directory: directory)
    defer { transcript.closeAll() }
    try script(transcript)
    return transcript
}

/// One issue per differing line (at most 10), each naming the step.
func expectEqual(_ onMount: Transcript, _ onPlain: Transcript, log: String, sourceLocation: SourceLocation) {
    var reported = 0
    for i in 0..<max(onMount.lines.count, onPlain.lines.count) {
        let m = i < onMount.lines.count ? onMount.lines[i] : "(nothing)"
        let p = i < onPlain.lines.count ? onPlain.lines[i] : "(nothing)"
        guard m != p else { continue }
        Issue.record("step \(i): through the mount \(m); in a plain directory \(p)", sourceLocation: sourceLocation)
        reported += 1
        if reported == 10 { break }
    }
    if reported > 0 && !log.isEmpty { Issue.record("daemon log:\n\(log.suffix(3000))", sourceLocation: sourceLocation) }
}

private let KiB = 1024, MiB = 1 << 20

// MARK: the operations

extension AllMountTests {
    @Suite(.timeLimit(.minutes(5)))
    struct OperationsTests {
        @Test("lookup and getattr: stat and lstat of files, dirs, symlinks, missing names")
        func lookupAndGetattr() throws {
            try compareWithPlainDirectory { t in
                t.create("f", "hello")
                t.call("mkdir d", sys { mkdir(t.path("d"), 0o750) })
                t.call("symlink l -> f", sys { symlink("f", t.path("l")) })
                t.call("symlink dangling", sys { symlink("nowhere", t.path("dangling")) })
                for name in ["f", "d", "l", "dangling", "missing", "f/below-a-file", "d/.."] {
                    t.stat(name)
                    t.stat(name, follow: true)
                }
            }
        }

        @Test("setattr: chmod, chown, truncate up and down, utimensat explicit, UTIME_NOW, UTIME_OMIT")
        func setattr() throws {
            try compareWithPlainDirectory { t in
                let f = t.path("f")
                t.create("f", "0123456789")
                t.call("chmod 640", sys { chmod(f, 0o640) }); t.stat("f")
                t.call("chmod 4755", sys { chmod(f, 0o4755) }); t.stat("f")
                t.call("chown 1234:5678", sys { chown(f, 1234, 5678) }); t.stat("f")
                t.call("chown -1:42", sys { chown(f, uid_t.max, 42) }); t.stat("f")
                t.call("truncate to 10000", sys { truncate(f, 10000) }); t.stat("f"); t.content("f")
                t.call("truncate to 3", sys { truncate(f, 3) }); t.stat("f"); t.content("f")
                let fd = t.open("f", O_RDWR)
                t.call("ftruncate to 5000", sys { ftruncate(fd, 5000) })
                t.call("fchmod 600", sys { fchmod(fd, 0o600) })
                t.close(fd)
                t.stat("f"); t.content("f")

                t.call("utimensat explicit", setTimes(f, atime: (1_000_000_000, 123_456_789), mtime: (1_100_000_000, 500)))
                t.times("f")
                t.call("utimensat atime OMIT", setTimes(f, atime: (0, Linux.UTIME_OMIT), mtime: (1_200_000_000, 0)))
                t.times("f")
                t.call("utimensat mtime NOW", setTimes(f, atime: (0, Linux.UTIME_OMIT), mtime: (0, Linux.UTIME_NOW)))
                t.mtimeMoved("f", since: 1_200_000_000)
                t.call("utimensat back", setTimes(f, atime: (1_000_000_000, 0), mtime: (1_000_000_000, 0)))
                let writer = t.open("f", O_WRONLY)
                t.call("write", pwriteBytes(writer, Array("new".utf8), at: 0))
                t.close(writer)
                t.mtimeMoved("f", since: 1_000_000_000)

                t.call("utimensat f explicit again", setTimes(f, atime: (1_000_000_000, 0), mtime: (1_000_000_000, 0)))
                t.call("symlink l", sys { symlink("f", t.path("l")) })
                t.call("lchown l 77:88", sys { lchown(t.path("l"), 77, 88) }); t.stat("l"); t.stat("f")
                t.call("utimensat nofollow l", setTimes(t.path("l"), atime: (900_000_000, 0), mtime: (900_000_001, 0), follow: false))
                t.times("l"); t.times("f")
                t.call("mkdir d", sys { mkdir(t.path("d"), 0o755) })
                t.call("chmod d 1777", sys { chmod(t.path("d"), 0o1777) }); t.stat("d")
                t.call("truncate d", sys { truncate(t.path("d"), 0) })
                t.call("chmod missing", sys { chmod(t.path("missing"), 0o644) })
            }
        }

        @Test("readlink: long targets, short buffers, non-links")
        func readlinkCases() throws {
            try compareWithPlainDirectory { t in
                let target = String(repeating: "x/", count: 100) + "end"
                t.call("symlink long", sys { symlink(target, t.path("l")) })
                let (full, text) = readlinkText(t.path("l"))
                t.call("readlink", full); t.record("target", text)
                let (short, prefix) = readlinkText(t.path("l"), bufferSize: 10)
                t.call("readlink into 10 bytes", short); t.record("target prefix", prefix)
                t.create("f", "x")
                t.call("readlink on a file", readlinkText(t.path("f")).0)
                t.call("readlink missing", readlinkText(t.path("missing")).0)
                t.call("symlink over existing", sys { symlink("y", t.path("f")) })
            }
        }

        @Test("mknod: FIFO and regular file")
        func mknodCases() throws {
            try compareWithPlainDirectory { t in
                t.call("mkfifo p 640", sys { mkfifo(t.path("p"), 0o640) }); t.stat("p")
                t.call("mknod regular r", sys { mknod(t.path("r"), S_IFREG | 0o600, 0) }); t.stat("r")
                t.call("mkfifo p again", sys { mkfifo(t.path("p"), 0o640) })
                t.call("mkfifo under missing dir", sys { mkfifo(t.path("nodir/p"), 0o640) })
                let reader = t.open("p", O_RDONLY | O_NONBLOCK)
                if reader >= 0 { t.close(reader) }
            }
        }

        @Test("mkdir, unlink, rmdir (non-empty: ENOTEMPTY)")
        func directoriesAndUnlink() throws {
            try compareWithPlainDirectory { t in
                t.call("mkdir d 750", sys { mkdir(t.path("d"), 0o750) }); t.stat("d")
                t.call("mkdir d again", sys { mkdir(t.path("d"), 0o750) })
                t.call("mkdir d/e", sys { mkdir(t.path("d/e"), 0o755) }); t.stat("d")
                t.create("d/f", "x")
                t.call("rmdir non-empty d", sys { rmdir(t.path("d")) })
                t.call("unlink a dir", sys { unlink(t.path("d")) })
                t.call("rmdir a file", sys { rmdir(t.path("d/f")) })
                t.call("mkdir below a file", sys { mkdir(t.path("d/f/x"), 0o755) })
                t.call("unlink d/f", sys { unlink(t.path("d/f")) })
                t.call("rmdir d/e", sys { rmdir(t.path("d/e")) }); t.stat("d")
                t.call("rmdir d", sys { rmdir(t.path("d")) }); t.stat("d")
                t.call("unlink missing", sys { unlink(t.path("missing")) })
                t.call("rmdir missing", sys { rmdir(t.path("missing")) })
            }
        }

        @Test("symlink and link (nlink 2, shared data)")
        func symlinkAndLink() throws {
            try compareWithPlainDirectory { t in
                t.create("f", "abc")
                t.call("link f g", sys { link(t.path("f"), t.path("g")) })
                t.stat("f"); t.stat("g")
                let appender = t.open("g", O_WRONLY | O_APPEND)
                t.call("append through g", writeBytes(appender, Array("def".utf8)))
                t.close(appender)
                t.content("f")
                t.call("link onto existing", sys { link(t.path("f"), t.path("g")) })
                t.call("mkdir d", sys { mkdir(t.path("d"), 0o755) })
                t.call("link a dir", sys { link(t.path("d"), t.path("d2")) })
                t.call("link into d", sys { link(t.path("f"), t.path("d/h")) }); t.stat("f")
                t.call("unlink f", sys { unlink(t.path("f")) }); t.stat("g"); t.content("d/h")
                t.call("symlink s -> g", sys { symlink("g", t.path("s")) })
                t.stat("s"); t.stat("s", follow: true); t.content("s")
            }
        }

        @Test("rename: plain, over a file, dirs, RENAME_NOREPLACE, RENAME_EXCHANGE")
        func renameCases() throws {
            try compareWithPlainDirectory { t in
                let p = t.path
                t.create("a", "A"); t.create("b", "B")
                t.call("rename a c", sys { rename(p("a"), p("c")) }); t.stat("a"); t.content("c")
                t.call("rename c over b", sys { rename(p("c"), p("b")) }); t.stat("c"); t.content("b")
                for d in ["d1", "d2", "d3"] { t.call("mkdir \(d)", sys { mkdir(p(d), 0o755) }) }
                t.create("d3/x", "X")
                t.call("rename dir over empty dir", sys { rename(p("d1"), p("d2")) }); t.stat("d1"); t.stat("d2")
                t.call("rename dir over non-empty dir", sys { rename(p("d2"), p("d3")) })
                t.call("rename file over dir", sys { rename(p("b"), p("d3")) })
                t.call("rename dir over file", sys { rename(p("d3"), p("b")) })
                t.create("e", "E")
                t.call("NOREPLACE onto existing", renameat2(p("b"), p("e"), flags: Linux.RENAME_NOREPLACE))
                t.content("b"); t.content("e")
                t.call("NOREPLACE to a new name", renameat2(p("b"), p("n"), flags: Linux.RENAME_NOREPLACE))
                t.stat("b"); t.content("n")
                t.call("EXCHANGE two files", renameat2(p("n"), p("e"), flags: Linux.RENAME_EXCHANGE))
                t.content("n"); t.content("e")
                t.call("EXCHANGE file and dir", renameat2(p("e"), p("d3"), flags: Linux.RENAME_EXCHANGE))
                t.stat("e"); t.stat("d3"); t.content("d3"); t.content("e/x")
                t.call("EXCHANGE with missing", renameat2(p("n"), p("missing"), flags: Linux.RENAME_EXCHANGE))
                t.call("rename into a subdir", sys { rename(p("n"), p("e/n")) })
                t.record("listing e", listDirectory(p("e")).1)
                t.call("mkdir e/sub", sys { mkdir(p("e/sub"), 0o755) })
                t.call("rename dir into its own subdir", sys { rename(p("e"), p("e/sub/e")) })
                t.call("rename missing", sys { rename(p("missing"), p("z")) })
            }
        }

        @Test("open and create: O_EXCL, O_TRUNC, modes, wrong types")
        func openAndCreate() throws {
            try compareWithPlainDirectory { t in
                let fd = t.open("f", O_CREAT | O_EXCL | O_WRONLY, 0o600)
                t.call("write", writeBytes(fd, Array("hello".utf8)))
                t.close(fd)
                t.stat("f")
                t.open("f", O_CREAT | O_EXCL | O_WRONLY, 0o600)
                let again = t.open("f", O_CREAT | O_RDWR, 0o666)
                t.close(again); t.content("f")
                let truncating = t.open("f", O_WRONLY | O_TRUNC)
                t.stat("f")
                t.close(truncating); t.content("f")
                let masked = t.open("g", O_CREAT | O_WRONLY, 0o777)
                t.close(masked); t.stat("g")
                t.open("missing", O_RDONLY)
                t.open("nodir/f", O_CREAT | O_WRONLY)
                t.call("mkdir d", sys { mkdir(t.path("d"), 0o755) })
                t.open("d", O_WRONLY)
                t.open("f", O_RDONLY | O_DIRECTORY)
                t.call("symlink l -> f", sys { symlink("f", t.path("l")) })
                t.open("l", O_RDONLY | O_NOFOLLOW)
            }
        }

        @Test("O_APPEND: every write lands at the end, also with the writeback cache")
        func appendSemantics() throws {
            try compareWithPlainDirectory { t in
                t.create("f", "0123456789")
                let appender = t.open("f", O_WRONLY | O_APPEND)
                t.call("append abc", writeBytes(appender, Array("abc".utf8)))
                t.call("lseek to 0", sys { lseek(appender, 0, SEEK_SET) })
                t.call("write after seek", writeBytes(appender, Array("XY".utf8)))
                t.call("pwrite at 0 on O_APPEND", pwriteBytes(appender, Array("Q".utf8), at: 0))
                let other = t.open("f", O_RDWR)
                t.call("overwrite at 2 through another fd", pwriteBytes(other, Array("zz".utf8), at: 2))
                t.call("extend through another fd", pwriteBytes(other, pattern(file: 1, offset: 0, count: 5000), at: 20_000))
                t.call("append END", writeBytes(appender, Array("END".utf8)))
                t.stat("f")
                t.close(other); t.close(appender)
                t.content("f")
                let reader = t.open("f", O_RDONLY)
                t.bytes("last 3 bytes", preadBytes(reader, count: 3, at: 25_000).1)
                t.close(reader)
            }
        }

        @Test("O_WRONLY files: partial page writes are read back by the kernel")
        func writeOnlyFiles() throws {
            try compareWithPlainDirectory { t in
                t.create("f", pattern(file: 2, offset: 0, count: 10_000))
                let fd = t.open("f", O_WRONLY)
                t.call("pwrite across a page boundary", pwriteBytes(fd, Array("ABCDEFG".utf8), at: 4090))
                t.call("pwrite inside the last page", pwriteBytes(fd, Array("xyz".utf8), at: 9000))
                t.call("pwrite past EOF", pwriteBytes(fd, Array("past".utf8), at: 12_000))
                var byte: UInt8 = 0
                t.call("read on O_WRONLY", sys { read(fd, &byte, 1) })
                t.close(fd)
                t.stat("f"); t.content("f")
            }
        }

        @Test("read, write, pwrite, pread at offsets, holes, EOF, through two fds")
        func readAndWrite() throws {
            try compareWithPlainDirectory { t in
                let fd = t.open("f", O_CREAT | O_RDWR)
                t.call("pwrite 100 at 0", pwriteBytes(fd, pattern(file: 3, offset: 0, count: 100), at: 0))
                t.call("pwrite 4 KiB past a hole", pwriteBytes(fd, pattern(file: 3, offset: 0, count: 4 * KiB), at: MiB + 17))
                t.stat("f")
                for (offset, count) in [(0, 200), (MiB - 500, 1000), (MiB + 17 + 4 * KiB, 10), (5 * MiB, 10)] {
                    let (outcome, bytes) = preadBytes(fd, count: count, at: offset)
                    t.call("pread \(count) at \(offset)", outcome); t.bytes("data", bytes)
                }
                t.call("lseek SEEK_END", sys { lseek(fd, 0, SEEK_END) })
                t.call("write at the end", writeBytes(fd, Array("tail".utf8)))
                t.call("lseek SEEK_CUR", sys { lseek(fd, 0, SEEK_CUR) })
                t.call("lseek SEEK_SET 50", sys { lseek(fd, 50, SEEK_SET) })
                var buffer = [UInt8](repeating: 0, count: 20)
                t.call("read 20", sys { read(fd, &buffer, 20) }); t.bytes("data", buffer)
                t.call("pwrite 3 MiB at 5000", pwriteBytes(fd, pattern(file: 4, offset: 5000, count: 3 * MiB), at: 5000))
                let reader = t.open("f", O_RDONLY)
                let (outcome, bytes) = preadBytes(reader, count: 4 * MiB, at: 0)
                t.call("pread through a second fd", outcome); t.bytes("data", bytes)
                t.close(reader); t.close(fd)
                t.stat("f"); t.content("f")
            }
        }

        @Test("flush, fsync, fdatasync, fsyncdir")
        func flushAndSync() throws {
            try compareWithPlainDirectory { t in
                let fd = t.open("f", O_CREAT | O_RDWR)
                t.call("write", writeBytes(fd, pattern(file: 5, offset: 0, count: 100_000)))
                t.call("fsync", sys { fsync(fd) })
                t.call("fdatasync", sys { fdatasync(fd) })
                let copy = dup(fd)
                t.call("close a dup (flush)", sys { close(copy) })
                t.call("write more", writeBytes(fd, Array("more".utf8)))
                t.close(fd)
                let reader = t.open("f", O_RDONLY)
                t.call("fsync a read-only fd", sys { fsync(reader) })
                t.close(reader)
                let dir = t.open("", O_RDONLY | O_DIRECTORY)
                t.call("fsync a directory (fsyncdir)", sys { fsync(dir) })
                t.call("fdatasync a directory", sys { fdatasync(dir) })
                t.close(dir)
                t.content("f")
            }
        }

        @Test("opendir and readdir: names and d_type")
        func readdirCases() throws {
            try compareWithPlainDirectory { t in
                for name in ["a", "b", "c"] { t.create(name, name) }
                t.call("mkdir sub", sys { mkdir(t.path("sub"), 0o755) })
                t.call("symlink l", sys { symlink("a", t.path("l")) })
                t.call("mkfifo p", sys { mkfifo(t.path("p"), 0o644) })
                t.call("link a a2", sys { link(t.path("a"), t.path("a2")) })
                t.record("listing", listDirectory(t.path("")).1)
                t.call("unlink b", sys { unlink(t.path("b")) })
                t.record("listing after unlink", listDirectory(t.path("")).1)
                let empty = listDirectory(t.path("sub"))
                t.call("opendir empty", empty.0); t.record("listing of sub", empty.1)
                t.call("opendir a file", listDirectory(t.path("a")).0)
                t.call("opendir missing", listDirectory(t.path("missing")).0)
            }
        }

        @Test("a directory of 5,000 entries lists completely and rm -rf removes it")
        func bigDirectory() throws {
            let names = (0..<5000).map { String(format: "entry-%05d-with-a-longer-name", $0) }
            try withMount { fs in
                try withTemporaryDirectory("plain") { plain in
                    for root in [fs.path("big"), plain + "/big"] {
                        try check("mkdir \(root)", sys { mkdir(root, 0o755) })
                        for name in names { try writeFile(root + "/" + name, []) }
                        let (listed, entries) = listDirectory(root)
                        #expect(listed.ok, "readdir \(root): \(listed)")
                        #expect(entries.map(\.name) == names, "\(root) lists \(entries.count) of \(names.count) entries")
                        #expect(entries.allSatisfy { $0.type == UInt8(DT_REG) }, "d_type of \(root)")
                        let removal = try runCommand("rm", ["-rf", root])
                        #expect(removal.status == 0, "rm -rf \(root): \(removal)")
                        #expect(!statOf(root).0.ok, "\(root) still exists after rm -rf")
                    }
                    #expect(!statOf(fs.backing("big")).0.ok, "the backing dir still exists after rm -rf through the mount")
                }
            }
        }

        @Test("statfs: block size and block count of the backing file system")
        func statfsMatchesBacking() throws {
            try withMount { fs in
                var throughMount = statvfs(), backing = statvfs()
                #expect(statvfs(fs.mountpoint, &throughMount) == 0, "statvfs \(fs.mountpoint): \(errnoText(errno))")
                #expect(statvfs(fs.source, &backing) == 0)
                #expect(throughMount.f_bsize == backing.f_bsize)
                #expect(throughMount.f_blocks == backing.f_blocks)
                #expect(throughMount.f_files == backing.f_files)
            }
        }

        @Test("xattrs: set, get, size query, list, remove, ENODATA, flags")
        func xattrs() throws {
            try compareWithPlainDirectory { t in
                t.create("f", "x")
                let f = t.path("f")
                t.call("setxattr user.x", setxattr(f, "user.x", Array("value".utf8)))
                t.call("getxattr size query", getxattr(f, "user.x", size: 0).0)
                let (got, value) = getxattr(f, "user.x", size: 100)
                t.call("getxattr", got); t.bytes("value", value)
                t.call("getxattr into 2 bytes", getxattr(f, "user.x", size: 2).0)
                t.call("getxattr missing", getxattr(f, "user.missing", size: 100).0)
                t.call("XATTR_CREATE on existing", setxattr(f, "user.x", [1], flags: Linux.XATTR_CREATE))
                t.call("XATTR_REPLACE on missing", setxattr(f, "user.y", [1], flags: Linux.XATTR_REPLACE))
                t.call("setxattr empty value", setxattr(f, "user.empty", []))
                t.call("getxattr empty value", getxattr(f, "user.empty", size: 10).0)
                let (listed, names) = listxattr(f)
                t.call("listxattr", listed); t.record("names", names)
                t.call("removexattr", removexattr(f, "user.x"))
                t.call("removexattr again", removexattr(f, "user.x"))
                t.record("names after remove", listxattr(f).1)
                t.call("mkdir d", sys { mkdir(t.path("d"), 0o755) })
                t.call("setxattr on a dir", setxattr(t.path("d"), "user.d", Array("dir".utf8)))
                t.bytes("dir value", getxattr(t.path("d"), "user.d", size: 10).1)
            }
        }

        @Test("access: F_OK, R_OK, W_OK, X_OK on several modes")
        func accessCases() throws {
            try compareWithPlainDirectory { t in
                for mode: mode_t in [0o000, 0o644, 0o755, 0o100] {
                    t.create("f\(String(mode, radix: 8))", "x")
                    t.call("chmod", sys { chmod(t.path("f\(String(mode, radix: 8))"), mode) })
                }
                t.call("mkdir d", sys { mkdir(t.path("d"), 0o700) })
                for name in ["f0", "f644", "f755", "f100", "d", "missing"] {
                    for (maskName, mask) in [("F_OK", F_OK), ("R_OK", R_OK), ("W_OK", W_OK), ("X_OK", X_OK), ("RWX", R_OK | W_OK | X_OK)] {
                        t.call("access \(name) \(maskName)", sys { access(t.path(name), mask) })
                    }
                }
            }
        }

        @Test("fallocate: posix_fallocate, PUNCH_HOLE|KEEP_SIZE, KEEP_SIZE")
        func fallocateCases() throws {
            try compareWithPlainDirectory { t in
                let fd = t.open("f", O_CREAT | O_RDWR)
                t.call("posix_fallocate 1 MiB", returnedErrno(posix_fallocate(fd, 0, off_t(MiB))))
                t.stat("f")
                t.call("pwrite 1 MiB", pwriteBytes(fd, pattern(file: 6, offset: 0, count: MiB), at: 0))
                t.call("fsync", sys { fsync(fd) })
                t.call("punch a hole", fallocate(fd, mode: Linux.FALLOC_FL_PUNCH_HOLE | Linux.FALLOC_FL_KEEP_SIZE, offset: 4096, length: 61_440))
                t.stat("f")
                let (read, bytes) = preadBytes(fd, count: 70_000, at: 0)
                t.call("pread over the hole", read); t.bytes("data", bytes)
                #expect(bytes.count == 70_000 && bytes[4096..<65_536].allSatisfy { $0 == 0 }, "the punched range reads as zeros in \(t.directory)")
                t.call("PUNCH_HOLE without KEEP_SIZE", fallocate(fd, mode: Linux.FALLOC_FL_PUNCH_HOLE, offset: 0, length: 4096))
                t.call("posix_fallocate past EOF", returnedErrno(posix_fallocate(fd, off_t(2 * MiB), 4096)))
                t.stat("f")
                t.call("fallocate KEEP_SIZE past EOF", fallocate(fd, mode: Linux.FALLOC_FL_KEEP_SIZE, offset: 3 * MiB, length: 4096))
                t.stat("f")
                t.close(fd)
                t.content("f")
            }
        }

        @Test("copy_file_range between two files")
        func copyFileRangeCases() throws {
            try compareWithPlainDirectory { t in
                t.create("src", pattern(file: 7, offset: 0, count: 200 * KiB))
                let input = t.open("src", O_RDONLY)
                let output = t.open("dst", O_CREAT | O_RDWR)
                t.call("copy_file_range 100000 bytes", copyFileRange(from: input, at: 1000, to: output, at: 5000, count: 100_000))
                t.call("copy_file_range past EOF", copyFileRange(from: input, at: 300 * KiB, to: output, at: 0, count: 100))
                let (read, bytes) = preadBytes(output, count: 200 * KiB, at: 0)
                t.call("pread dst", read); t.bytes("dst", bytes)
                let writeOnly = t.open("src", O_WRONLY)
                t.call("copy_file_range from O_WRONLY", copyFileRange(from: writeOnly, at: 0, to: output, at: 0, count: 10))
                t.close(writeOnly); t.close(input); t.close(output)
                t.stat("dst"); t.content("dst")
            }
        }

        /// Without the writeback cache the backing file's holes are the
        /// file's holes: the answers equal ext4's.
        @Test("lseek SEEK_DATA and SEEK_HOLE on a sparse file", arguments: [["nowriteback"]])
        func seekDataAndHole(options: [String]) throws {
            try compareWithPlainDirectory(options: options) { t in
                let fd = t.open("sparse", O_CREAT | O_RDWR)
                t.call("pwrite 4 KiB at 0", pwriteBytes(fd, pattern(file: 8, offset: 0, count: 4096), at: 0))
                t.call("pwrite 4 KiB at 1 MiB", pwriteBytes(fd, pattern(file: 8, offset: 0, count: 4096), at: MiB))
                t.call("fsync", sys { fsync(fd) })
                for (name, whence, offset) in [("SEEK_DATA", Linux.SEEK_DATA, 0), ("SEEK_HOLE", Linux.SEEK_HOLE, 0),
                                               ("SEEK_DATA", Linux.SEEK_DATA, 4096), ("SEEK_HOLE", Linux.SEEK_HOLE, MiB),
                                               ("SEEK_DATA", Linux.SEEK_DATA, MiB + 4096), ("SEEK_HOLE", Linux.SEEK_HOLE, 2 * MiB)] {
                    t.call("lseek \(name) from \(offset)", sys { lseek(fd, off_t(offset), whence) })
                }
                t.call("pwrite 4 KiB at 2 MiB, no fsync", pwriteBytes(fd, pattern(file: 8, offset: 0, count: 4096), at: 2 * MiB))
                t.call("lseek SEEK_DATA from 1 MiB + 4 KiB", sys { lseek(fd, off_t(MiB + 4096), Linux.SEEK_DATA) })
                t.close(fd)
            }
        }

        /// With the writeback cache, data may still sit dirty in the kernel's
        /// page cache, where the backing file has a hole: faultfs declines
        /// FUSE_LSEEK and the kernel gives POSIX's fallback answers (all of
        /// the file is data, the only hole is at EOF), never a hole over data.
        @Test("lseek SEEK_DATA and SEEK_HOLE with the writeback cache: data still in the page cache is never skipped")
        func seekDataAndHoleWithWritebackCache() throws {
            try withMount { fs in
                let fd = open(fs.path("sparse"), O_CREAT | O_RDWR, 0o644)
                #expect(fd >= 0)
                defer { close(fd) }
                #expect(pwriteBytes(fd, pattern(file: 8, offset: 0, count: 4096), at: 0).ok)
                #expect(pwriteBytes(fd, pattern(file: 8, offset: 0, count: 4096), at: MiB).ok)
                #expect(sys { fsync(fd) }.ok)
                #expect(pwriteBytes(fd, pattern(file: 8, offset: 0, count: 4096), at: 2 * MiB).ok)  // not written back
                let size = 2 * MiB + 4096
                for offset in [0, 4096, MiB, MiB + 4096, 2 * MiB] {
                    #expect(sys { lseek(fd, off_t(offset), Linux.SEEK_DATA) } == Outcome(value: offset, errno: 0), "SEEK_DATA from \(offset)")
                    #expect(sys { lseek(fd, off_t(offset), Linux.SEEK_HOLE) } == Outcome(value: size, errno: 0), "SEEK_HOLE from \(offset)")
                }
                #expect(sys { lseek(fd, off_t(size), Linux.SEEK_DATA) }.errno == ENXIO)
            }
        }

        @Test("flock and fcntl POSIX locks conflict with a second process")
        func locks() throws {
            // The second process: takes a POSIX write lock on ARGV[0] without
            // waiting; exits 0 on success, else with the errno.
            let perlPOSIXLock = """
                use Fcntl; open(my $f, "+<", $ARGV[0]) or exit 100;
                my $lock = pack("s s x4 q q i x4", F_WRLCK, 0, 0, 0, 0);
                fcntl($f, F_SETLK, $lock) or exit($! + 0); exit 0;
                """
            try compareWithPlainDirectory { t in
                t.create("f", "locked")
                let fd = t.open("f", O_RDWR)
                t.call("flock LOCK_EX", sys { flock(fd, LOCK_EX) })
                let contended = try runCommand("flock", ["-n", "-E", "75", t.path("f"), "true"])
                t.record("flock -n from another process (75: EWOULDBLOCK)", contended.status)
                #expect(contended.status == 75, "flock -n while held, in \(t.directory): \(contended)")
                t.call("flock LOCK_UN", sys { flock(fd, LOCK_UN) })
                t.record("flock -n from another process after unlock", try runCommand("flock", ["-n", "-E", "75", t.path("f"), "true"]).status)

                var lock = flock()
                lock.l_type = Int16(F_WRLCK); lock.l_whence = Int16(SEEK_SET); lock.l_start = 0; lock.l_len = 0
                t.call("fcntl F_SETLK write lock", sys { fcntl(fd, F_SETLK, &lock) })
                let blocked = try runCommand("perl", ["-e", perlPOSIXLock, t.path("f")])
                t.record("F_SETLK from another process", "\(blocked.status) (\(errnoText(blocked.status)))")
                #expect(blocked.status == EAGAIN || blocked.status == EACCES, "F_SETLK while held, in \(t.directory): \(blocked)")
                lock.l_type = Int16(F_UNLCK)
                t.call("fcntl F_SETLK unlock", sys { fcntl(fd, F_SETLK, &lock) })
                t.record("F_SETLK from another process after unlock", try runCommand("perl", ["-e", perlPOSIXLock, t.path("f")]).status)
                t.close(fd)
            }
        }

        @Test("O_DIRECT: aligned writes and reads succeed and the data is right")
        func directIO() throws {
            try compareWithPlainDirectory { t in
                try withAlignedBuffer(size: 16 * KiB) { buffer in
                    let data = pattern(file: 9, offset: 0, count: 16 * KiB)
                    buffer.copyBytes(from: data)
                    let fd = t.open("direct", O_CREAT | O_RDWR | Linux.O_DIRECT)
                    t.call("O_DIRECT pwrite 16 KiB", sys { pwrite(fd, buffer.baseAddress, 16 * KiB, 0) })
                    t.call("O_DIRECT pwrite 4 KiB at 20 KiB", sys { pwrite(fd, buffer.baseAddress! + 4096, 4096, off_t(20 * KiB)) })
                    memset(buffer.baseAddress!, 0, 16 * KiB)
                    t.call("O_DIRECT pread 16 KiB", sys { pread(fd, buffer.baseAddress, 16 * KiB, 0) })
                    #expect(Array(buffer) == data, "O_DIRECT read back in \(t.directory)")
                    t.bytes("read back", Array(buffer))
                    t.close(fd)
                }
                t.stat("direct"); t.content("direct")
            }
        }
    }
}
