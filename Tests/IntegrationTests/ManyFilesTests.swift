// More files than the daemon's RLIMIT_NOFILE (set to 4,096 here, for the
// daemon to inherit): the daemon keeps a bounded number of fds (FDCache),
// whatever the kernel remembers, and serves every file right when its fd
// had to be closed and reopened.
import Glibc
import Testing

private let directoryCount = 100
private let filesPerDirectory = 300
private let fdLimit = 1_000
private let daemonOpenFileLimit: rlim_t = 4_096

/// What file d/f holds: 100 bytes that name it (so a mixed-up fd shows).
private func payload(_ d: Int, _ f: Int) -> [UInt8] {
    let name = Array("d\(d)/f\(f) ".utf8)
    return (0..<100).map { name[$0 % name.count] }
}

/// The soft "Max open files" of a process, from /proc/PID/limits.
private func openFileLimit(pid: pid_t) -> Int? {
    let line = textOfFile("/proc/\(pid)/limits").split(separator: "\n").first { $0.hasPrefix("Max open files") }
    return line.flatMap { Int($0.split(separator: " ", omittingEmptySubsequences: true)[3]) }
}

/// Runs `body` with this process's soft RLIMIT_NOFILE at `limit` (a daemon
/// started meanwhile inherits it), restoring it afterwards.
private func withOpenFileLimit<T>(_ limit: rlim_t, _ body: () throws -> T) throws -> T {
    var saved = rlimit()
    try check("getrlimit", sys { getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &saved) })
    var lowered = rlimit(rlim_cur: min(limit, saved.rlim_max), rlim_max: saved.rlim_max)
    try check("setrlimit", sys { setrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &lowered) })
    defer { _ = setrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &saved) }
    return try body()
}

/// Sum of apparent sizes (`du -s -b`) and of blocks (`du -s -B1`) under `path`.
private func diskUsage(_ path: String) throws -> (apparent: Int?, allocated: Int?, raw: String) {
    let apparent = try runCommand("du", ["-s", "-b", path]), allocated = try runCommand("du", ["-s", "-B1", path])
    func number(_ result: CommandResult) -> Int? {
        result.status == 0 ? Int(result.stdout.split(separator: "\t").first ?? "") : nil
    }
    return (number(apparent), number(allocated), "\(apparent); \(allocated)")
}

extension AllMountTests {
    @Suite(.timeLimit(.minutes(10)))
    struct ManyFilesTests {
        @Test("30,000 files in 100 dirs, daemon RLIMIT_NOFILE 4,096: create, find, read back, du, delete; fewer than 1,000 fds open")
        func thirtyThousandFiles() throws {
            try withOpenFileLimit(daemonOpenFileLimit) {
                try withMount { fs in try manyFiles(fs) }
            }
        }

        private func manyFiles(_ fs: MountedFS) throws {
            let daemonLimit = try #require(openFileLimit(pid: fs.pid), "the daemon's limits: \(textOfFile("/proc/\(fs.pid)/limits"))")
            try #require(daemonLimit < directoryCount * filesPerDirectory, "the daemon may open \(daemonLimit) files: no more files than that")
            var mostFDs = 0
            func sampleFDs() { mostFDs = max(mostFDs, openFDCount(pid: fs.pid)) }

            for d in 0..<directoryCount {
                try check("mkdir d\(d)", sys { mkdir(fs.path("d\(d)"), 0o755) })
                for f in 0..<filesPerDirectory { try writeFile(fs.path("d\(d)/f\(f)"), payload(d, f)) }
                if d % 10 == 9 { sampleFDs() }
            }

            let found = try runCommand("find", [fs.mountpoint])
            #expect(found.status == 0, "find: \(found.stderr.prefix(1000))")
            let expected = 1 + directoryCount + directoryCount * filesPerDirectory
            #expect(found.stdout.split(separator: "\n").count == expected, "find lists \(found.stdout.split(separator: "\n").count) paths")
            sampleFDs()

            // Every file read back through the daemon (O_DIRECT opens are served
            // with direct_io: no page cache), long after its fd left the cache.
            var wrong: [String] = []
            try withAlignedBuffer(size: 4096) { buffer in
                for d in 0..<directoryCount {
                    for f in 0..<filesPerDirectory {
                        let fd = try openOrThrow(fs.path("d\(d)/f\(f)"), O_RDONLY | Linux.O_DIRECT)
                        let read = sys { Glibc.pread(fd, buffer.baseAddress, 4096, 0) }
                        close(fd)
                        if !read.ok || Array(buffer.prefix(max(read.value, 0))) != payload(d, f) { wrong.append("d\(d)/f\(f): \(read)") }
                    }
                    if d % 10 == 9 { sampleFDs() }
                }
            }
            #expect(wrong.isEmpty, "\(wrong.count) files read back wrong, e.g. \(wrong.prefix(5))")

            // du through the mount counts what the backing directory holds.
            let (mounted, backing) = (try diskUsage(fs.mountpoint), try diskUsage(fs.source))
            #expect(mounted.apparent == backing.apparent && (mounted.apparent ?? 0) >= directoryCount * filesPerDirectory * 100,
                    "du -sb: mount \(mounted.raw), backing \(backing.raw)")
            #expect(mounted.allocated == backing.allocated, "du -s -B1: mount \(mounted.raw), backing \(backing.raw)")
            sampleFDs()

            for d in 0..<directoryCount {
                for f in 0..<filesPerDirectory {
                    let removed = sys { unlink(fs.path("d\(d)/f\(f)")) }
                    if !removed.ok { Issue.record("unlink d\(d)/f\(f): \(removed)"); return }
                }
                let removed = sys { rmdir(fs.path("d\(d)")) }
                #expect(removed.ok, "rmdir d\(d): \(removed)")
                if d % 10 == 9 { sampleFDs() }
            }
            #expect(listDirectory(fs.mountpoint).1.isEmpty)
            #expect(listDirectory(fs.source).1.isEmpty, "the backing dir is not empty")
            sampleFDs()
            #expect(mostFDs < fdLimit, "the daemon had \(mostFDs) fds open (limit \(fdLimit))")
            #expect(openFDCount(pid: fs.pid) < fdLimit)
        }
    }
}
