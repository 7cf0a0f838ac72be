import Glibc
import Synchronization
import System
import Testing
import TestSupport

@Suite struct ErrnoTests {
    @Test func describesAndNamesItself() {
        #expect(Errno.ENOSPC.description == "No space left on device")
        #expect(Errno.EIO.rawValue == EIO)
        #expect(Errno(28).name == "ENOSPC")
        #expect(Errno(named: "enospc") == .ENOSPC)
        #expect(Errno(named: "EWOULDBLOCK")?.rawValue == EAGAIN)  // an alias
        #expect(Errno(41).name == nil)  // unassigned on Linux
        #expect(Errno(named: "ENOPE") == nil)
    }

    /// Every name the table gives is glibc's own value.
    @Test func namesMatchGlibc() {
        let known: [(String, Int32)] = [("EPERM", EPERM), ("EAGAIN", EAGAIN), ("EDQUOT", EDQUOT),
                                        ("EOPNOTSUPP", EOPNOTSUPP), ("EHWPOISON", EHWPOISON)]
        for (name, value) in known { #expect(Errno(value).name == name) }
    }

    @Test func sysCallRetriesOnlyEINTR() {
        var calls = 0
        let result: Int32? = try? sysCall { () -> Int32 in
            calls += 1
            if calls < 3 { errno = EINTR; return -1 }
            return 7
        }
        #expect(result == 7 && calls == 3)
        #expect(throws: Errno.ENOENT) { try sysCall { () -> Int32 in errno = ENOENT; return -1 } }
        #expect(throws: Errno.ENOENT) { try sysCall { open("/nonexistent/faultfs", O_RDONLY) } }
    }
}

/// CSystem's constants are checked against glibc's in csystem.c at build
/// time; these against the kernel's documented values.
@Suite struct ConstantsTests {
    @Test func timeMarkersMatchTheKernel() {
        #expect(CSYS_UTIME_NOW == (1 << 30) - 1)
        #expect(CSYS_UTIME_OMIT == (1 << 30) - 2)
    }

    /// A handle names the file it was taken of (root: open_by_handle_at needs CAP_DAC_READ_SEARCH).
    @Test func fileHandlesRoundTrip() throws {
        var handle = csys_file_handle()
        #expect(csys_name_to_handle(AT_FDCWD, "/tmp", &handle, 0) > 8)
        let mount = open("/tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        try #require(mount >= 0)
        defer { close(mount) }
        let fd = csys_open_by_handle(mount, &handle, Int32(CSYS_O_PATH) | O_CLOEXEC)
        try #require(fd >= 0, "open_by_handle_at: \(Errno.current)")
        defer { close(fd) }
        var viaHandle = stat(), viaPath = stat()
        fstat(fd, &viaHandle)
        stat("/tmp", &viaPath)
        #expect(viaHandle.st_ino == viaPath.st_ino && viaHandle.st_dev == viaPath.st_dev)
    }
}

@Suite struct MountTableTests {
    let sample = """
        22 1 0:21 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
        36 22 98:0 /mnt1 /srv/my\\040data rw,noatime master:1 - fuse.faultfs /srv/my\\040data rw,user_id=0
        37 22 0:30 / /tmp/tab\\011and\\134slash rw shared:2 shared:3 - tmpfs tmpfs rw
        38 22 0:31 / /no/optional rw - proc proc rw
        garbage line
        39 22 0:32 / /short rw -
        """

    @Test func parsesFieldsAroundOptionalOnes() {
        let entries = MountTable.parse(sample)
        #expect(entries.map(\.mountID) == [22, 36, 37, 38])
        #expect(entries[0] == MountEntry(mountID: 22, device: "0:21", root: "/", mountPoint: "/", fileSystemType: "ext4", source: "/dev/sda1"))
        #expect(entries[1].root == "/mnt1")
        #expect(entries[3].fileSystemType == "proc")
    }

    @Test func unescapesOctal() {
        let entries = MountTable.parse(sample)
        #expect(entries[1].mountPoint == "/srv/my data")
        #expect(entries[1].source == "/srv/my data")
        #expect(entries[2].mountPoint == "/tmp/tab\tand\\slash")
        #expect(MountTable.unescape("a\\012b") == "a\nb")
        #expect(MountTable.unescape("no\\escape") == "no\\escape")  // not three octal digits
        #expect(MountTable.unescape("end\\04") == "end\\04")
    }

    @Test func topMountIsTheLastAtThePath() {
        let text = sample + "\n40 22 0:33 / /srv/my\\040data rw - tmpfs tmpfs rw"
        #expect(MountTable.topMount(at: "/srv/my data", in: MountTable.parse(text))?.mountID == 40)
        #expect(MountTable.topMount(at: "/nowhere", in: MountTable.parse(text)) == nil)
    }

    @Test func readsThisProcessTable() {
        let root = MountTable.topMount(at: "/")
        #expect(root != nil)
        #expect(MountTable.current().contains { $0.mountPoint == "/proc" && $0.fileSystemType == "proc" })
    }
}

@Suite struct ProcFSTests {
    @Test func readsThisProcess() throws {
        let pid = getpid()
        let comm = try #require(ProcFS.comm(pid: pid))
        #expect(!comm.isEmpty && !comm.hasSuffix("\n") && comm.utf8.count <= 15)
        #expect(ProcFS.tgid(tid: pid) == pid)
        let status = try #require(ProcFS.status(pid: pid))
        #expect(status["Name"] == comm)
        #expect(status["Pid"] == String(pid))
        let argv = try #require(ProcFS.cmdline(pid: pid))
        #expect(argv == CommandLine.arguments)
        #expect(ProcFS.pids().contains(pid))
        #expect(ProcFS.selfExecutable().hasPrefix("/"))
    }

    /// A thread's tgid is its process's pid; its comm is its own name.
    @Test func readsAThread() throws {
        let seen = Mutex<(tid: pid_t, tgid: pid_t?, comm: String?)?>(nil)
        let done = Atomic<Bool>(false)
        startThread {
            setThreadName("sys-test-thr")
            // "/proc/thread-self" links to "PID/task/TID".
            var link = [CChar](repeating: 0, count: 64)
            let n = readlink("/proc/thread-self", &link, link.count - 1)
            let tid = pid_t(String(decoding: link[0..<max(n, 0)].map { UInt8(bitPattern: $0) }, as: UTF8.self)
                .split(separator: "/").last ?? "") ?? 0
            seen.withLock { $0 = (tid, ProcFS.tgid(tid: tid), ProcFS.comm(pid: tid)) }
            done.store(true, ordering: .releasing)
        }
        for _ in 0..<1000 where !done.load(ordering: .acquiring) { SystemClock.sleep(nanoseconds: 10_000_000) }
        let result = try #require(seen.withLock { $0 })
        #expect(result.tid != getpid())
        #expect(result.tgid == getpid())
        #expect(result.comm == "sys-test-thr")
    }

    @Test func goneProcessIsNil() {
        #expect(ProcFS.comm(pid: 0x3fff_fff0) == nil)
        #expect(ProcFS.tgid(tid: 0x3fff_fff0) == nil)
        #expect(ProcFS.cmdline(pid: 0x3fff_fff0) == nil)
    }
}

@Suite struct FileTests {
    @Test func writesAndReadsBack() throws {
        let (fd, path) = try makeScratchFile("systest")
        close(fd)
        defer { unlink(path) }
        try File.write(path, "one\n", create: true)
        #expect(File.readText(path) == "one\n")
        try File.write(path, "x")  // no truncation without create
        #expect(File.readText(path) == "xne\n")
        #expect(try File.read(path, limit: 2).count >= 2)
        #expect(throws: Errno.ENOENT) { try File.read("/nonexistent/faultfs") }
        #expect(File.readText("/nonexistent/faultfs") == nil)
    }

    @Test func readsProcFilesOfSizeZero() {
        #expect(File.readText("/proc/self/status")?.contains("Tgid:") == true)
        #expect(File.names(inDirectory: "/proc/self")?.contains("status") == true)
    }

    @Test func absolutePathsAreLexical() throws {
        #expect(Path.absolute("/a/./b/../c") == "/a/c")
        #expect(Path.absolute("/..") == "/")
        let cwd = Path.absolute(".")
        #expect(cwd.hasPrefix("/"))
        #expect(Path.absolute("x/y") == (cwd == "/" ? "" : cwd) + "/x/y")
        #expect(throws: Errno.ENOENT) { try Path.canonical("/nonexistent/faultfs") }
        #expect(try Path.canonical("/proc/self/..") == "/proc")
    }
}

@Suite struct ClockTests {
    @Test func clocksAdvanceAndSleepWaits() {
        let start = SystemClock.monotonicNanoseconds()
        SystemClock.sleep(nanoseconds: 2_000_000)
        #expect(SystemClock.monotonicNanoseconds() - start >= 2_000_000)
        SystemClock.sleep(nanoseconds: -5)  // returns at once
        #expect(SystemClock.realtimeNanoseconds() > 1_700_000_000 * 1_000_000_000)
    }
}

@Suite struct ReadWriteLockTests {
    /// Writers under the lock never lose an update, with readers interleaved.
    @Test func writersExcludeEachOther() {
        final class Counter: @unchecked Sendable { var value = 0 }
        let lock = ReadWriteLock()
        let counter = Counter()
        let finished = Atomic<Int>(0)
        for _ in 0..<4 {
            startThread {
                for _ in 0..<10_000 {
                    lock.withWriteLock { counter.value += 1 }
                    _ = lock.withReadLock { counter.value }
                }
                finished.add(1, ordering: .releasing)
            }
        }
        for _ in 0..<3000 where finished.load(ordering: .acquiring) < 4 { SystemClock.sleep(nanoseconds: 10_000_000) }
        let count = finished.load(ordering: .acquiring)
        #expect(count == 4)
        #expect(lock.withReadLock { counter.value } == 40_000)
    }

    /// Two readers hold it at once.
    @Test func readersShare() {
        let lock = ReadWriteLock()
        let inside = Atomic<Int>(0)
        let sawBoth = Atomic<Bool>(false)
        let finished = Atomic<Int>(0)
        for _ in 0..<2 {
            startThread {
                lock.withReadLock {
                    inside.add(1, ordering: .acquiringAndReleasing)
                    for _ in 0..<500 where !sawBoth.load(ordering: .acquiring) {
                        if inside.load(ordering: .acquiring) == 2 { sawBoth.store(true, ordering: .releasing) }
                        SystemClock.sleep(nanoseconds: 1_000_000)
                    }
                }
                finished.add(1, ordering: .releasing)
            }
        }
        for _ in 0..<3000 where finished.load(ordering: .acquiring) < 2 { SystemClock.sleep(nanoseconds: 10_000_000) }
        let both = sawBoth.load(ordering: .acquiring)
        #expect(both)
    }
}

@Suite struct ObjectAddressTests {
    final class Thing { let n: Int; init(_ n: Int) { self.n = n } }

    /// The integer from `retain` keeps the object alive until `release`.
    @Test func roundTripsThroughAnInteger() {
        weak var watcher: Thing?
        let id = { () -> UInt64 in
            let thing = Thing(7)
            watcher = thing
            return ObjectAddress.integer(ObjectAddress.retain(thing))
        }()
        #expect(watcher != nil)  // only the integer's reference keeps it
        #expect(ObjectAddress.object(at: ObjectAddress.address(id), as: Thing.self).n == 7)
        #expect(watcher.map { ObjectAddress.integer(ObjectAddress.of($0)) } == id)
        ObjectAddress.release(ObjectAddress.address(id), as: Thing.self)
        #expect(watcher == nil)
    }
}

/// `faultfs crash --kill`: which /proc entries name a mount.
@Suite struct MountUseTests {
    let mount = MountUse(mountID: 61, device: "0:52", mountPoint: "/srv/db")!

    @Test func parsesTheDevice() {
        #expect(mount.major == 0 && mount.minor == 52)
        #expect(MountUse(mountID: 1, device: "0-52", mountPoint: "/x") == nil)
    }

    @Test func openFilesByMountID() {
        #expect(mount.holds(fdinfo: "pos:\t0\nflags:\t0100002\nmnt_id:\t61\nino:\t12\n"))
        #expect(!mount.holds(fdinfo: "pos:\t0\nflags:\t0100002\nmnt_id:\t610\nino:\t12\n"))
        #expect(!mount.holds(fdinfo: "pos:\t0\n"))
    }

    @Test func directoriesByPath() {
        #expect(mount.contains(path: "/srv/db"))
        #expect(mount.contains(path: "/srv/db/sub/dir"))
        #expect(!mount.contains(path: "/srv/dbx"))
        #expect(!mount.contains(path: "/srv"))
    }

    @Test func mappingsByDevice() {
        let maps = """
            7f0000000000-7f0000001000 r--s 00000000 00:34 12 /srv/db/data.mdb
            7f0000002000-7f0000003000 rw-p 00000000 00:00 0 
            """
        #expect(mount.maps(maps), "maps writes the device in hex: 00:34 is 0:52")
        #expect(mount.maps("7f0000000000-7f0000001000 r--s 00000000 00:34 12 /srv/db/data.mdb"))
        #expect(!mount.maps("7f0000000000-7f0000001000 r--s 00000000 00:35 12 /other"))
        #expect(!mount.maps("7f0000002000-7f0000003000 rw-p 00000000 00:34 0 "), "inode 0: anonymous")
    }
}

@Suite struct DeviceKnobsTests {
    @Test func namesDevicesAsSysfsDoes() {
        var st = stat()
        #expect(stat("/dev/null", &st) == 0)
        #expect(DeviceKnobs.name(of: st.st_rdev) == "1:3")
        // glibc's makedev(259, 1_048_575) and makedev(4_095 + 1, 256): the high bits of each half.
        let major: UInt64 = 259, minor: UInt64 = 1_048_575
        let big = ((major & 0xfff) << 8) | ((major & ~0xfff) << 32) | (minor & 0xff) | ((minor & ~0xff) << 12)
        #expect(DeviceKnobs.name(of: dev_t(big)) == "259:1048575")
        let high: UInt64 = 4_096
        #expect(DeviceKnobs.name(of: dev_t(((high & 0xfff) << 8) | ((high & ~0xfff) << 32) | 0x100 << 12)) == "4096:256")
    }

    @Test func aDiskHasAReadaheadTmpfsHasNone() {
        var st = stat()
        #expect(stat("/dev/shm", &st) == 0)
        #expect(DeviceKnobs.blockReadaheadKiB(of: st.st_dev) == nil)
    }
}
