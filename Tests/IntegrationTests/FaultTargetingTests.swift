// Which requests a rule selects: path globs, prob+seed, after/count/every,
// offset ranges, comm and pid. Without the writeback cache (-o nowriteback)
// every write() is one synchronous FUSE_WRITE, so each write's result shows
// whether the rule selected it.
import Foundation
import Glibc
import Testing

/// Indices (0..<count) of the 1-byte pwrites to `path` (at offset i) that failed with EIO;
/// records any other failure.
private func failingWrites(_ path: String, count: Int) throws -> [Int] {
    let fd = try openOrThrow(path, O_CREAT | O_WRONLY)
    defer { close(fd) }
    var failed: [Int] = []
    for index in 0..<count {
        let written = pwriteBytes(fd, [UInt8(truncatingIfNeeded: index) | 1], at: index)
        if written.errno == EIO { failed.append(index) } else {
            #expect(written.value == 1, "write #\(index) to \(path): \(written)")
        }
    }
    return failed
}

/// Writes 100 bytes to `path` (opened without truncation); the outcome.
private func write100(_ path: String, at offset: Int = 0) throws -> Outcome {
    let fd = try openOrThrow(path, O_WRONLY)
    defer { close(fd) }
    return pwriteBytes(fd, [UInt8](repeating: 0x61, count: 100), at: offset)
}

/// `dd` of 100 zero bytes into `path` (no truncation): its exit status and stderr.
private func ddArguments(_ path: String) -> [String] {
    ["if=/dev/zero", "of=\(path)", "bs=100", "count=1", "conv=notrunc,fsync"]
}

extension AllMountTests {
    @Suite(.serialized, .timeLimit(.minutes(5)))
    struct FaultTargetingTests {
        private static func prepareFiles(_ source: String) throws {
            try check("mkdir d", sys { mkdir(source + "/d", 0o755) })
            try check("mkdir d/e", sys { mkdir(source + "/d/e", 0o755) })
            for name in ["a.wal", "b.dat", "d/a.wal", "d/e/c.wal", "x.wal.bak"] { try writeFile(source + "/" + name, "") }
        }

        @Test("path=*.wal hits a.wal only; path=**/*.wal hits .wal files at every depth")
        func pathGlobs() throws {
            try withMount(options: ["nowriteback"], prepare: Self.prepareFiles) { fs in
                let files = ["a.wal", "b.dat", "d/a.wal", "d/e/c.wal", "x.wal.bak"]
                func failing() throws -> [String] { try files.filter { try write100(fs.path($0)).errno == EIO } }

                try fs.arm("fail syncwrite EIO path=*.wal")
                #expect(try failing() == ["a.wal"])
                try fs.arm("clear", "fail syncwrite EIO path=**/*.wal")
                #expect(try failing() == ["a.wal", "d/a.wal", "d/e/c.wal"])
                try fs.arm("clear", "fail syncwrite EIO path=d/*")
                #expect(try failing() == ["d/a.wal"])
                try fs.arm("clear", "fail syncwrite EIO path=d/**")
                #expect(try failing() == ["d/a.wal", "d/e/c.wal"])
                try fs.arm("clear", "fail syncwrite EIO path=?.dat")
                #expect(try failing() == ["b.dat"])
                try fs.arm("clear")
                #expect(try failing() == [])
                // The events name each path as the rule saw it.
                let paths = Set(fs.events().filter { $0.action == "fail" }.compactMap(\.path))
                #expect(paths == ["a.wal", "d/a.wal", "d/e/c.wal", "b.dat"], "\(paths)")
            }
        }

        @Test("path= on namespace ops: create and mkdir are matched by the new name")
        func pathOnNamespaceOps() throws {
            try withMount(options: ["nowriteback"], prepare: Self.prepareFiles) { fs in
                try fs.arm("fail create,mkdir EACCES path=d/new*")
                #expect(openFile(fs.path("d/new.txt"), O_CREAT | O_WRONLY).errno == EACCES)
                #expect(sys { mkdir(fs.path("d/newdir"), 0o755) }.errno == EACCES)
                #expect(sys { mkdir(fs.path("newdir"), 0o755) }.ok, "not under d/")
                let other = openFile(fs.path("d/old.txt"), O_CREAT | O_WRONLY | O_CLOEXEC)
                #expect(other.ok)
                if other.ok { close(Int32(other.value)) }
            }
        }

        @Test("prob+seed: the same seed selects the same writes in two runs; another seed others")
        func probabilityWithSeed() throws {
            try withMount(options: ["nowriteback"]) { fs in
                try fs.arm("fail syncwrite EIO prob=0.3 seed=7 path=r1.dat")
                let first = try failingWrites(fs.path("r1.dat"), count: 200)
                #expect(fs.controlText().contains("matched=200 hits=\(first.count)"), "\(fs.controlText())")
                try fs.arm("clear", "fail syncwrite EIO prob=0.3 seed=7 path=r2.dat")
                let second = try failingWrites(fs.path("r2.dat"), count: 200)
                try fs.arm("clear", "fail syncwrite EIO prob=0.3 seed=8 path=r3.dat")
                let third = try failingWrites(fs.path("r3.dat"), count: 200)
                try fs.arm("clear")

                #expect(first.count > 20 && first.count < 120, "about 30% of 200 selected: \(first.count)")
                #expect(first == second, "same seed, same selection: \(first) vs \(second)")
                #expect(first != third, "seed 8 selected the same writes as seed 7: \(first)")
                // reset-counters restarts the random sequence too.
                try fs.arm("fail syncwrite EIO prob=0.3 seed=7 path=r4.dat id=again")
                _ = try failingWrites(fs.path("r4.dat"), count: 50)
                try fs.arm("reset-counters")
                #expect(try failingWrites(fs.path("r4.dat"), count: 200) == first, "after reset-counters")
            }
        }

        @Test("after / count / every select exactly the expected writes", arguments: [
            ("after=3", [3, 4, 5, 6, 7, 8, 9, 10, 11]),
            ("count=2", [0, 1]),
            ("every=3", [2, 5, 8, 11]),
            ("after=3 every=2 count=3", [4, 6, 8]),
            ("after=2 count=1", [2]),
            ("every=4 count=2", [3, 7]),
            ("after=11", [11]),
            ("after=12", []),
        ])
        func afterCountEvery(keys: String, expected: [Int]) throws {
            try withMount(options: ["nowriteback"]) { fs in
                try fs.arm("fail syncwrite EIO path=n.dat \(keys)")
                #expect(try failingWrites(fs.path("n.dat"), count: 12) == expected, "\(keys)")
                #expect(fs.controlText().contains("matched=12 hits=\(expected.count)")
                        || fs.controlText().contains("hits=\(expected.count) dormant"), "\(fs.controlText())")
                #expect(fs.counter("syncwrite", "failed") == Int64(expected.count))
            }
        }

        @Test("offset=A-B selects the writes that overlap [A, B); A- is open-ended")
        func offsetRange() throws {
            try withMount(options: ["nowriteback"]) { fs in
                let fd = try openOrThrow(fs.path("o.dat"), O_CREAT | O_WRONLY)
                defer { close(fd) }
                func fails(_ offset: Int, _ length: Int) -> Bool {
                    let written = pwriteBytes(fd, [UInt8](repeating: 0x6f, count: length), at: offset)
                    #expect(written.ok || written.errno == EIO, "pwrite(\(offset), \(length)): \(written)")
                    return written.errno == EIO
                }
                // Each pwrite below is one FUSE_WRITE: it starts on a page boundary
                // or stays within one page (see the split case at the end).
                try fs.arm("fail syncwrite EIO offset=4K-8K")
                let cases: [(Int, Int, Bool)] = [
                    (0, 100, false), (3996, 100, false), (3995, 100, false), (0, 4097, true), (4096, 1, true),
                    (5000, 100, true), (8191, 1, true), (8100, 92, true), (4096, 8192, true), (8192, 100, false),
                    (12000, 10, false), (0, 16384, true), (0, 4096, false),
                ]
                for (offset, length, expected) in cases {
                    #expect(fails(offset, length) == expected, "pwrite at \(offset), \(length) bytes, rule offset=4K-8K")
                }
                try fs.arm("clear", "fail syncwrite EIO offset=1M-")
                for (offset, length, expected) in [(0, 100, false), ((1 << 20) - 1, 1, false), (1 << 20, 1, true), (5 << 20, 10, true), ((1 << 20) - 4096, 4097, true)] {
                    #expect(fails(offset, length) == expected, "pwrite at \(offset), \(length) bytes, rule offset=1M-")
                }
                // Linux 6.18 sends an unaligned write-through write that crosses a
                // page boundary into a page not in the cache as two FUSE_WRITEs,
                // cut at the boundary (a partly written page that is not uptodate
                // ends the batch). On a fresh file, pwrite(4000, 100) becomes
                // [4000, 4096), outside the range, and [4096, 4100), inside: the
                // first is stored, the second failed, and the caller sees a short
                // write of 96 bytes rather than EIO.
                try fs.arm("clear", "fail syncwrite EIO offset=4K-8K path=split.dat")
                let fresh = try openOrThrow(fs.path("split.dat"), O_CREAT | O_WRONLY)
                defer { close(fresh) }
                let split = pwriteBytes(fresh, [UInt8](repeating: 0x73, count: 100), at: 4000)
                #expect(split == Outcome(value: 96, errno: 0), "pwrite(4000, 100) across the 4K boundary: \(split)")
                let tail = fs.events().suffix(1).first
                #expect(tail?.offset == 4096 && tail?.length == 4, "the failed second request: \(String(describing: tail))")
            }
        }

        @Test("comm=dd: a dd child fails, the test process and another command do not")
        func commFilter() throws {
            try withMount(options: ["nowriteback"], prepare: { try writeFile($0 + "/m.dat", "") }) { fs in
                try fs.arm("fail syncwrite EIO comm=dd path=m.dat")
                let dd = try runCommand("dd", ddArguments(fs.path("m.dat")), limitSeconds: 60)
                #expect(dd.status != 0, "dd should fail: \(dd)")
                #expect(dd.stderr.contains("Input/output error"), "\(dd.stderr)")
                #expect(try write100(fs.path("m.dat")).value == 100, "the test process is not dd")
                let shell = try runCommand("sh", ["-c", "printf 'abc' >> \(fs.path("m.dat"))"], limitSeconds: 60)
                #expect(shell.status == 0, "sh is not dd: \(shell)")
                let events = fs.events().filter { $0.action == "fail" }
                #expect(events.count == 1 && events.first?.comm == "dd" && events.first?.pid ?? 0 > 0, "\(events)")
                #expect(try backingBytes(fs, "m.dat").count == 103)
            }
        }

        // FUSE's request "pid" is the calling *thread's* id (the kernel sends
        // task_pid(current), not the thread group id). The test functions run
        // on a worker thread of a multithreaded process, so `pid=getpid()`
        // does not match their writes; `pid=<thread id>` does. For a
        // single-threaded child the two are equal.
        @Test("pid=N selects the requests of that process or thread only")
        func pidFilter() throws {
            try withMount(options: ["nowriteback"], prepare: { try writeFile($0 + "/q.dat", "") }) { fs in
                // A child that waits for a line on stdin, then becomes dd (same pid).
                let child = Process()
                child.executableURL = URL(fileURLWithPath: try resolveExecutable("sh"))
                child.arguments = ["-c", "read line; exec dd " + ddArguments(fs.path("q.dat")).joined(separator: " ")]
                let input = Pipe()
                child.standardInput = input
                child.standardOutput = FileHandle.nullDevice
                child.standardError = FileHandle.nullDevice
                try child.run()
                try fs.arm("fail syncwrite EIO pid=\(child.processIdentifier) path=q.dat")
                input.fileHandleForWriting.write(Data("go\n".utf8))
                try input.fileHandleForWriting.close()
                let exited = pollUntil(polls: 6000) { !child.isRunning }
                #expect(exited, "the child did not finish")
                child.waitUntilExit()
                #expect(child.terminationStatus != 0, "the child with pid \(child.processIdentifier) should have failed")

                let other = try runCommand("dd", ddArguments(fs.path("q.dat")), limitSeconds: 60)
                #expect(other.status == 0, "another dd (another pid) is not selected: \(other)")
                #expect(try write100(fs.path("q.dat")).ok, "the test process is not selected")
                let hits = fs.events().filter { $0.action == "fail" }
                #expect(hits.count == 1 && hits.first?.pid == child.processIdentifier, "\(hits)")

                // The test thread's own id selects its writes.
                try fs.arm("clear", "fail syncwrite EIO pid=\(currentThreadID()) path=q.dat")
                #expect(try write100(fs.path("q.dat")).errno == EIO, "pid=<this thread's id>")
                #expect(try runCommand("dd", ddArguments(fs.path("q.dat")), limitSeconds: 60).status == 0)
                // FUSE reports thread ids; pid= also matches the thread's process.
                try fs.arm("clear", "fail syncwrite EIO pid=\(getpid()) path=q.dat")
                #expect(try write100(fs.path("q.dat")).errno == EIO, "pid=getpid() selects the writes of any of its threads")
            }
        }
    }
}
