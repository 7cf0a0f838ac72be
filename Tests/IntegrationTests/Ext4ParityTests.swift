// Where an application must get through the mount what it gets from ext4,
// beyond what the POSIX suites look at: set-id bits after fallocate, mmap of
// an O_DIRECT file, page-cache coherence around asynchronous O_DIRECT
// writes, POSIX ACLs. Each test runs the same thing on the mount and on a
// plain ext4 directory and compares.
import Foundation
import Glibc
import Testing

/// uid and gid of the unprivileged user the tests act as (nobody:nogroup).
private let nobody: uid_t = 65534

/// Runs `command` as 65534:65534 with no supplementary groups.
func runAsNobody(_ command: [String]) throws -> CommandResult {
    try runCommand("setpriv", ["--reuid=\(nobody)", "--regid=\(nobody)", "--clear-groups"] + command)
}

/// Installs Debian packages a test needs unless `present` says they are there
/// (CI runs on fresh machines).
func requirePackages(_ packages: [String], present: () -> Bool) throws {
    if present() { return }
    let result = try runCommand("apt-get", ["-o", "DPkg::Lock::Timeout=300", "install", "-y", "-qq"] + packages)
    guard result.status == 0, present() else { throw SetupError("apt-get install \(packages.joined(separator: " ")): \(result)") }
}

/// Runs `body` with an empty directory on ext4 (the reference): a temp dir
/// when /tmp is ext4, else a fresh ext4 image on a loop device that is
/// unmounted and detached afterwards.
func withExt4Directory<T>(_ body: (String) throws -> T) throws -> T {
    // f_type in hex: ef53 for ext2/3/4 (/tmp on ext2/3 is not a concern here).
    let type = try runCommand("stat", ["-f", "-c", "%t", "/tmp"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    if type == "ef53" {
        return try withTemporaryDirectory("ext4") { dir in
            chmod(dir, 0o755)
            return try body(dir)
        }
    }
    return try withTemporaryDirectory("ext4img") { base in
        chmod(base, 0o755)
        let image = base + "/image", mountpoint = base + "/mnt"
        try check("mkdir", sys { mkdir(mountpoint, 0o755) })
        try check("truncate image", sys { truncate(image, 256 << 20) })
        let mkfs = try runCommand("mkfs.ext4", ["-q", "-F", image])
        guard mkfs.status == 0 else { throw SetupError("mkfs.ext4: \(mkfs)") }
        let attach = try runCommand("losetup", ["--find", "--show", image])
        let device = attach.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        guard attach.status == 0, !device.isEmpty else { throw SetupError("losetup: \(attach)") }
        defer { _ = try? runCommand("losetup", ["-d", device]) }
        let mounted = try runCommand("mount", ["-t", "ext4", device, mountpoint])
        guard mounted.status == 0 else { throw SetupError("mount \(device): \(mounted)") }
        defer { _ = try? runCommand("umount", [mountpoint]) }
        return try body(mountpoint)
    }
}

/// A sticky, world-writable directory `d` in `root` (for files of several users).
private func makeSharedDirectory(_ root: String) throws -> String {
    let dir = root + "/d"
    try check("mkdir \(dir)", sys { mkdir(dir, 0o700) })
    try check("chmod \(dir)", sys { chmod(dir, 0o1777) })
    return dir
}

/// The text of `getfacl -cp PATH` (no header), or the error it printed.
private func acl(_ path: String) throws -> String {
    let result = try runCommand("getfacl", ["-cp", path])
    return result.status == 0 ? result.stdout : "error: \(result.stderr.replacingOccurrences(of: path, with: "PATH"))"
}

private func requireACLTools() throws {
    try requirePackages(["acl"]) { (try? resolveExecutable("setfacl")) != nil }
}

extension AllMountTests {
    @Suite
    struct Ext4ParityTests {
        // MARK: set-id bits

        @Test("fallocate (allocate, punch hole, zero range) by another user clears setuid/setgid as on ext4",
              arguments: [[], ["nowriteback"]])
        func fallocateClearsSetIDBits(options: [String]) throws {
            // (name, fallocate flags, mode, group, the mode ext4 leaves)
            let cases: [(name: String, flags: [String], mode: mode_t, gid: gid_t, expected: mode_t)] = [
                ("allocate", [], 0o6777, 0, 0o777), ("punch", ["-p"], 0o6777, 0, 0o777), ("zero", ["-z"], 0o6777, 0, 0o777),
                // setgid without group execute: dropped unless the caller is in the group
                ("grow", [], 0o6767, 0, 0o767), ("ingroup", [], 0o6767, nobody, 0o2767),
            ]
            try withMount(options: ["allow_other"] + options) { fs in
                try withExt4Directory { ext4 in
                    let mounted = try makeSharedDirectory(fs.mountpoint), reference = try makeSharedDirectory(ext4)
                    for (name, flags, mode, gid, expected) in cases {
                        for dir in [mounted, reference] {
                            try writeFile(dir + "/" + name, [UInt8](repeating: 7, count: 65_536))
                            try check("chown", sys { chown(dir + "/" + name, 0, gid) })
                            try check("chmod", sys { chmod(dir + "/" + name, mode) })
                            let length = name == "allocate" || name == "punch" || name == "zero" ? "8192" : "200000"
                            let result = try runAsNobody(["fallocate"] + flags + ["-o", "4096", "-l", length, dir + "/" + name])
                            #expect(result.status == 0, "fallocate \(flags) \(dir)/\(name) as \(nobody): \(result)")
                        }
                        let onExt4 = summary(reference + "/" + name), throughMount = summary(mounted + "/" + name)
                        #expect(onExt4?.permissions == expected, "ext4 itself: \(name) \(onExt4.map(String.init(describing:)) ?? "missing")")
                        #expect(throughMount == onExt4, "\(name) through the mount \(throughMount.map(String.init(describing:)) ?? "missing"), on ext4 \(onExt4.map(String.init(describing:)) ?? "missing")")
                        #expect(summary(fs.backing("d/" + name))?.permissions == onExt4?.permissions, "\(name) in the backing dir")
                    }
                    // Root (CAP_FSETID) keeps the bits.
                    try check("chmod", sys { chmod(mounted + "/allocate", 0o6777) })
                    let fd = Int32(try check("open", openFile(mounted + "/allocate", O_RDWR)))
                    defer { close(fd) }
                    #expect(fallocate(fd, mode: 0, offset: 0, length: 300_000).ok)
                    #expect(summary(mounted + "/allocate")?.permissions == 0o6777)
                }
            }
        }

        // MARK: O_DIRECT

        @Test("a file opened with O_DIRECT can be mapped shared; bytes agree between mmap, O_DIRECT and buffered I/O",
              arguments: [[], ["nowriteback"], ["direct_io"]])
        func mmapOfODirectFile(options: [String]) throws {
            let size = 65_536
            func exercise(_ path: String) throws -> [String] {
                var log: [String] = []
                try writeFile(path, pattern(file: 1, offset: 0, count: size))
                let fd = open(path, O_RDWR | Linux.O_DIRECT | O_CLOEXEC)
                guard fd >= 0 else { return ["open O_DIRECT: \(errnoText(errno))"] }
                defer { close(fd) }
                guard let map = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), map != MAP_FAILED else {
                    return ["mmap: \(errnoText(errno))"]
                }
                defer { munmap(map, size) }
                let bytes = map.assumingMemoryBound(to: UInt8.self)
                log.append("mapped \(fnv1a(Array(UnsafeBufferPointer(start: bytes, count: size))))")
                // Through the map, then read with O_DIRECT and buffered.
                for i in 0..<4096 { bytes[i] = 0xA5 }
                log.append("msync \(sys { msync(map, size, MS_SYNC) })")
                try withAlignedBuffer(size: 8192) { buffer in
                    let n = sys { pread(fd, buffer.baseAddress, 8192, 0) }
                    log.append("O_DIRECT read \(n) \(fnv1a(Array(buffer)))")
                }
                log.append("buffered read \(fnv1a(Array(try readFile(path).get().prefix(8192))))")
                // With O_DIRECT, then seen through the map.
                try withAlignedBuffer(size: 4096) { buffer in
                    for i in 0..<4096 { buffer[i] = 0x3C }
                    log.append("O_DIRECT write \(sys { pwrite(fd, buffer.baseAddress, 4096, 8192) })")
                }
                log.append("map after O_DIRECT write \(fnv1a(Array(UnsafeBufferPointer(start: bytes + 8192, count: 4096))))")
                return log
            }
            try withMount(options: options) { fs in
                try withExt4Directory { ext4 in
                    let throughMount = try exercise(fs.path("f")), onExt4 = try exercise(ext4 + "/f")
                    #expect(throughMount == onExt4, "with -o \(options): through the mount \(throughMount), on ext4 \(onExt4)")
                }
            }
        }

        @Test("buffered readers racing asynchronous O_DIRECT writes: the writer's buffered read sees its data (5 s)",
              arguments: [[], ["nowriteback"], ["direct_io"]])
        func asyncDirectWritesAndBufferedReads(options: [String]) throws {
            try requirePackages(["libaio-dev", "gcc", "libc6-dev"]) { access("/usr/include/libaio.h", R_OK) == 0 && (try? resolveExecutable("cc")) != nil }
            try withTemporaryDirectory("aiodio") { dir in
                try writeFile(dir + "/aiodio.c", Array(aioDirectProgram.utf8))
                let built = try runCommand("cc", ["-O2", "-o", dir + "/aiodio", dir + "/aiodio.c", "-laio"])
                try #require(built.status == 0, "cc aiodio.c: \(built)")
                try withExt4Directory { ext4 in
                    let reference = try runCommand(dir + "/aiodio", [ext4 + "/f", "2", "2"], limitSeconds: 120)
                    #expect(reference.status == 0, "on ext4 (the reference): \(reference)")
                }
                try withMount(options: options) { fs in
                    let result = try runCommand(dir + "/aiodio", [fs.path("f"), "5", "2"], limitSeconds: 120)
                    #expect(result.status == 0, "through the mount with -o \(options): \(result)")
                    #expect(result.stdout.hasPrefix("rounds "), "\(result)")
                }
            }
        }

        // MARK: timestamps

        @Test("atime: relatime by default (a read after a change moves it, the next does not), noatime, strictatime; as on ext4")
        func accessTimes() throws {
            /// Reads `f` four times around a write; the atime after each step (as "moved"/"kept").
            func exercise(_ root: String) throws -> [String] {
                let path = root + "/f"
                try writeFile(path, "hello")
                try check("utimensat", setTimes(path, atime: (1_600_000_000, 0), mtime: (1_500_000_000, 0)))
                var last = statOf(path).1.st_atim, log: [String] = []
                func step(_ name: String, _ body: () throws -> Void) rethrows {
                    try body()
                    let now = statOf(path).1.st_atim
                    log.append("\(name): \(now.tv_sec == last.tv_sec && now.tv_nsec == last.tv_nsec ? "kept" : "moved")")
                    last = now
                }
                try step("read, atime newer than mtime") { _ = try readFile(path).get() }
                try check("utimensat", setTimes(path, atime: (1_500_000_000, 0), mtime: (1_600_000_000, 0)))
                last = statOf(path).1.st_atim
                try step("read, atime older than mtime") { _ = try readFile(path).get() }
                try step("read again") { _ = try readFile(path).get() }
                try step("open O_WRONLY, write") { try writeFile(path, "again") }
                usleep(20_000)
                try step("read after the write") { _ = try readFile(path).get() }
                return log
            }
            try withExt4Directory { ext4 in
                let onExt4 = try exercise(ext4)
                // (The first read moves it too: setting the times moved ctime past it.)
                #expect(onExt4 == ["read, atime newer than mtime: moved", "read, atime older than mtime: moved", "read again: kept",
                                   "open O_WRONLY, write: kept", "read after the write: moved"], "ext4 (relatime) itself: \(onExt4)")
                for options in [[], ["nowriteback"], ["relatime"]] {
                    try withMount(options: options) { fs in
                        let throughMount = try exercise(fs.mountpoint)
                        #expect(throughMount == onExt4, "-o \(options): through the mount \(throughMount), on ext4 \(onExt4)")
                    }
                }
            }
            try withMount(options: ["noatime"]) { fs in
                let log = try exercise(fs.mountpoint)
                #expect(log.allSatisfy { $0.hasSuffix("kept") }, "-o noatime: \(log)")
            }
            try withMount(options: ["strictatime"]) { fs in
                let log = try exercise(fs.mountpoint)
                #expect(log.filter { $0.hasPrefix("read") }.allSatisfy { $0.hasSuffix("moved") }, "-o strictatime: \(log)")
            }
        }

        /// With the writeback cache only mtime: the backing file's ctime is
        /// when data and times reached it, which can be a little later than
        /// the kernel's (ctime cannot be set; see README, Timestamps).
        @Test("mtime (and without the writeback cache ctime) seen before an unmount is the one seen after it",
              arguments: [[], ["nowriteback"]])
        func timesSurviveRemount(options: [String]) throws {
            let names = ["written", "rewritten", "truncated", "touched", "chmodded"]
            let withCTime = options.contains("nowriteback")
            func times(_ path: String) -> [Int] {
                let st = statOf(path).1
                return [st.st_mtim.tv_sec, st.st_mtim.tv_nsec] + (withCTime ? [st.st_ctim.tv_sec, st.st_ctim.tv_nsec] : [])
            }
            try withMount(options: options, prepare: { source in
                for name in names { try writeFile(source + "/" + name, [UInt8](repeating: 1, count: 100_000)) }
            }) { fs in
                usleep(50_000)
                try writeFile(fs.path("written"), [UInt8](repeating: 2, count: 200_000))
                let fd = Int32(try check("open", openFile(fs.path("rewritten"), O_RDWR)))
                #expect(pwriteBytes(fd, [9, 9, 9], at: 4096).ok)
                #expect(sys { close(fd) }.ok)
                #expect(sys { truncate(fs.path("truncated"), 10) }.ok)
                #expect(setTimes(fs.path("touched"), atime: (1_000, 0), mtime: (2_000, 0)).ok)
                #expect(sys { chmod(fs.path("chmodded"), 0o600) }.ok)
                var before: [String: [Int]] = [:]
                for name in names { before[name] = times(fs.path(name)) }

                // The same backing dir mounted again: a fresh kernel inode cache.
                #expect(fs.unmount().isEmpty)
                let binary = try FaultFSBinary.path()
                let again = try runCommand(binary, ["mount", "-o", options.isEmpty ? "writeback" : options.joined(separator: ","), fs.source, fs.mountpoint])
                try #require(again.status == 0, "mount again: \(again)")
                defer { _ = try? runCommand(binary, ["umount", fs.mountpoint]) }
                for name in names {
                    #expect(times(fs.path(name)) == before[name], "\(name) with -o \(options): after the remount \(times(fs.path(name))), before \(before[name] ?? [])")
                }
            }
        }

        // MARK: remount

        @Test("faultfs mount -o remount,ro / remount,rw changes the flags of a live mount; nosuid and nodev stay")
        func remountDirectly() throws {
            try withMount(prepare: { try writeFile($0 + "/f", "x") }) { fs in
                let binary = try FaultFSBinary.path()
                let ro = try runCommand(binary, ["mount", "-o", "remount,ro", fs.source, fs.mountpoint])
                #expect(ro.status == 0, "remount,ro: \(ro)")
                #expect(openFile(fs.path("g"), O_CREAT | O_WRONLY).errno == EROFS)
                #expect((try readFile(fs.path("f")).get()) == Array("x".utf8))
                let flags = mountFlags(fs.mountpoint)
                #expect(flags.contains("ro") && flags.contains("nosuid") && flags.contains("nodev"), "mount flags after remount,ro: \(flags)")
                let rw = try runCommand(binary, ["mount", "-o", "remount,rw", fs.source, fs.mountpoint])
                #expect(rw.status == 0, "remount,rw: \(rw)")
                let created = openFile(fs.path("g"), O_CREAT | O_WRONLY)
                #expect(created.ok, "create after remount,rw: \(created)")
                if created.ok { close(Int32(created.value)) }
                #expect(mountFlags(fs.mountpoint).contains("nosuid"))
            }
        }

        @Test("mount -o remount,ro / remount,rw through mount(8) and mount.fuse3")
        func remountThroughMount8() throws {
            // mount(8) runs its helpers with a default PATH: a private mount
            // namespace puts our faultfs in /usr/local/bin for that one command.
            let binary = try FaultFSBinary.path()
            try withTemporaryDirectory("bin") { bin in
                try check("symlink", sys { symlink(binary, bin + "/faultfs") })
                try withMount(prepare: { try writeFile($0 + "/f", "x") }) { fs in
                    func mount8(_ options: String) throws -> CommandResult {
                        try runCommand("unshare", ["-m", "--propagation", "private", "sh", "-c",
                                                   "mount --bind \(bin) /usr/local/bin && mount -o \(options) \(fs.mountpoint)"])
                    }
                    let ro = try mount8("remount,ro")
                    #expect(ro.status == 0, "mount -o remount,ro: \(ro)")
                    // The superblock is read-only for every namespace.
                    #expect(openFile(fs.path("g"), O_CREAT | O_WRONLY).errno == EROFS)
                    let rw = try mount8("remount,rw")
                    #expect(rw.status == 0, "mount -o remount,rw: \(rw)")
                    let created = openFile(fs.path("g"), O_CREAT | O_WRONLY)
                    #expect(created.ok, "create after remount,rw: \(created)")
                    if created.ok { close(Int32(created.value)) }
                }
            }
        }

        // MARK: POSIX ACLs

        @Test("an ACL entry grants and its mask limits access, the mode follows the ACL at once, as on ext4")
        func aclAccess() throws {
            try requireACLTools()
            try withMount(options: ["allow_other"]) { fs in
                try withExt4Directory { ext4 in
                    for root in [fs.mountpoint, ext4] {
                        try writeFile(root + "/secret", "secret", mode: 0o600)
                        try check("chmod", sys { chmod(root + "/secret", 0o600) })
                    }
                    func attempt(_ root: String) throws -> [String] {
                        let path = root + "/secret"
                        var log = ["read before: \(try runAsNobody(["cat", path]).status)"]
                        let set = try runCommand("setfacl", ["-m", "u:\(nobody):rw", path])
                        log.append("setfacl: \(set.status)")
                        log.append("mode: \(summary(path).map { String($0.permissions, radix: 8) } ?? "?")")
                        log.append("read: \(try runAsNobody(["cat", path]).status)")
                        log.append("append: \(try runAsNobody(["sh", "-c", "echo x >> \(path)"]).status)")
                        _ = try runCommand("setfacl", ["-m", "m::r", path])
                        log.append("mask mode: \(summary(path).map { String($0.permissions, radix: 8) } ?? "?")")
                        log.append("append under mask r: \(try runAsNobody(["sh", "-c", "echo x >> \(path)"]).status)")
                        log.append("read under mask r: \(try runAsNobody(["cat", path]).status)")
                        try check("chmod", sys { chmod(path, 0o600) })  // the mask follows the group bits
                        log.append("read after chmod 600: \(try runAsNobody(["cat", path]).status)")
                        log.append(try acl(path))
                        return log
                    }
                    let throughMount = try attempt(fs.mountpoint), onExt4 = try attempt(ext4)
                    #expect(throughMount == onExt4, "through the mount \(throughMount), on ext4 \(onExt4)")
                    #expect(try acl(fs.backing("secret")) == acl(ext4 + "/secret"), "the backing file's ACL")
                }
            }
        }

        @Test("a default ACL is inherited (mode without the umask) by files and dirs another user creates, as on ext4")
        func aclInheritance() throws {
            try requireACLTools()
            try withMount(options: ["allow_other"]) { fs in
                try withExt4Directory { ext4 in
                    func attempt(_ root: String) throws -> [String] {
                        let dir = try makeSharedDirectory(root)
                        try check("mkdir", sys { mkdir(dir + "/plain", 0o777) })
                        try check("chmod", sys { chmod(dir + "/plain", 0o777) })
                        try check("mkdir", sys { mkdir(dir + "/inherit", 0o777) })
                        try check("chmod", sys { chmod(dir + "/inherit", 0o777) })
                        let set = try runCommand("setfacl", ["-d", "-m", "u::rwx,g::rwx,o::rwx,u:\(nobody):rwx", dir + "/inherit"])
                        var log = ["setfacl -d: \(set.status)"]
                        for sub in ["plain", "inherit"] {
                            let script = "umask 077; touch \(dir)/\(sub)/file; mkdir \(dir)/\(sub)/sub; mknod \(dir)/\(sub)/fifo p"
                            log.append("\(sub) as \(nobody): \(try runAsNobody(["sh", "-c", script]).status)")
                            for name in ["file", "sub", "fifo"] {
                                log.append("\(sub)/\(name) \(summary(dir + "/\(sub)/\(name)").map(String.init(describing:)) ?? "missing")")
                                log.append(try acl(dir + "/\(sub)/\(name)"))
                            }
                        }
                        return log
                    }
                    let throughMount = try attempt(fs.mountpoint), onExt4 = try attempt(ext4)
                    #expect(throughMount == onExt4, "through the mount \(throughMount), on ext4 \(onExt4)")
                }
            }
        }

        @Test("setfacl by an owner outside the file's group clears setgid; root keeps it; as on ext4")
        func aclClearsSetgid() throws {
            try requireACLTools()
            try withMount(options: ["allow_other"]) { fs in
                try withExt4Directory { ext4 in
                    func attempt(_ root: String) throws -> [String] {
                        let dir = try makeSharedDirectory(root)
                        var log: [String] = []
                        for (name, asRoot) in [("byowner", false), ("byroot", true)] {
                            let path = dir + "/" + name
                            try writeFile(path, "x")
                            try check("chown", sys { chown(path, nobody, 0) })
                            try check("chmod", sys { chmod(path, 0o2770) })
                            let command = ["setfacl", "-m", "u:1:r", path]
                            let result = asRoot ? try runCommand(command[0], Array(command.dropFirst())) : try runAsNobody(command)
                            log.append("\(name): setfacl \(result.status), \(summary(path).map(String.init(describing:)) ?? "missing")")
                            log.append(try acl(path))
                        }
                        return log
                    }
                    let throughMount = try attempt(fs.mountpoint), onExt4 = try attempt(ext4)
                    #expect(throughMount == onExt4, "through the mount \(throughMount), on ext4 \(onExt4)")
                }
            }
        }

        @Test("-o noacl: ACLs are refused with EOPNOTSUPP, as on a file system without them, and nothing is stored")
        func aclRefused() throws {
            try requireACLTools()
            try withMount(options: ["noacl"], prepare: { try writeFile($0 + "/f", "x") }) { fs in
                #expect(setxattr(fs.path("f"), "system.posix_acl_access", posixACLBytes(user: 0o6, group: 0o4, other: 0)).errno == EOPNOTSUPP)
                let result = try runCommand("setfacl", ["-m", "u:\(nobody):r", fs.path("f")])
                #expect(result.status != 0 && result.stderr.contains("Operation not supported"), "\(result)")
                #expect(getxattr(fs.backing("f"), "system.posix_acl_access", size: 0).0.errno == ENODATA, "an ACL was stored in the backing file")
            }
        }
    }
}

/// The per-mount and superblock options of the mount at `path` (mountinfo fields 6 and 11).
func mountFlags(_ path: String) -> Set<String> {
    let text = (try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)) ?? ""
    for line in text.split(separator: "\n") {
        let fields = line.split(separator: " ").map(String.init)
        guard fields.count > 5, fields[4] == path, let dash = fields.firstIndex(of: "-"), dash + 3 < fields.count else { continue }
        return Set((fields[5] + "," + fields[dash + 3]).split(separator: ",").map(String.init))
    }
    return []
}

/// A system.posix_acl_access value with the three base entries only.
func posixACLBytes(user: UInt16, group: UInt16, other: UInt16) -> [UInt8] {
    func entry(_ tag: UInt16, _ perm: UInt16) -> [UInt8] {
        [UInt8(tag & 0xff), UInt8(tag >> 8), UInt8(perm & 0xff), UInt8(perm >> 8), 0xff, 0xff, 0xff, 0xff]
    }
    return [2, 0, 0, 0] + entry(0x01, user) + entry(0x04, group) + entry(0x20, other)
}

/// Async O_DIRECT writes (Linux AIO) of alternating patterns over 640 KiB
/// while buffered readers loop over the file; after each batch, a buffered
/// read by the writer must see the new bytes.
/// Usage: aiodio FILE SECONDS READERS; exit 0 clean, 1 stale data, 2 error.
let aioDirectProgram = #"""
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <libaio.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { FILE_SIZE = 640 * 1024, CHUNK = 64 * 1024, CHUNKS = FILE_SIZE / CHUNK };

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }

int main(int argc, char **argv) {
    if (argc != 4) { fprintf(stderr, "usage: %s FILE SECONDS READERS\n", argv[0]); return 2; }
    const char *path = argv[1];
    double seconds = atof(argv[2]);
    int readers = atoi(argv[3]);
    if (readers > 64) readers = 64;
    int fd = open(path, O_CREAT | O_TRUNC | O_RDWR, 0644);
    if (fd < 0) { perror("create"); return 2; }
    char *zero = calloc(1, FILE_SIZE);
    if (pwrite(fd, zero, FILE_SIZE, 0) != FILE_SIZE || fsync(fd) != 0) { perror("fill"); return 2; }
    close(fd);

    pid_t pids[64];
    for (int i = 0; i < readers; i++) {
        pids[i] = fork();
        if (pids[i] == 0) {
            char *buf = malloc(FILE_SIZE);
            int r = open(path, O_RDONLY);
            if (r < 0) _exit(2);
            for (;;) if (pread(r, buf, FILE_SIZE, 0) < 0) _exit(2);
        }
    }

    int dio = open(path, O_RDWR | O_DIRECT);
    int buffered = open(path, O_RDONLY);
    if (dio < 0 || buffered < 0) { perror("open"); return 2; }
    io_context_t ctx = 0;
    if (io_setup(CHUNKS, &ctx) != 0) { fprintf(stderr, "io_setup failed\n"); return 2; }
    void *data;
    if (posix_memalign(&data, 4096, FILE_SIZE) != 0) return 2;
    char *check = malloc(FILE_SIZE);
    struct iocb cbs[CHUNKS], *list[CHUNKS];
    struct io_event events[CHUNKS];
    int status = 0;
    long rounds = 0;
    double end = now() + seconds;
    while (now() < end && status == 0) {
        int byte = (rounds % 2) ? 0xaa : 0x55;
        memset(data, byte, FILE_SIZE);
        for (int c = 0; c < CHUNKS; c++) {
            io_prep_pwrite(&cbs[c], dio, (char *)data + c * CHUNK, CHUNK, (long long)c * CHUNK);
            list[c] = &cbs[c];
        }
        if (io_submit(ctx, CHUNKS, list) != CHUNKS) { fprintf(stderr, "io_submit failed\n"); status = 2; break; }
        int done = 0;
        while (done < CHUNKS) {
            int n = io_getevents(ctx, 1, CHUNKS - done, events, NULL);
            if (n < 0) { if (n == -EINTR) continue; fprintf(stderr, "io_getevents: %s\n", strerror(-n)); status = 2; break; }
            for (int i = 0; i < n; i++) if ((long)events[i].res != CHUNK) { fprintf(stderr, "aio write: res %ld\n", (long)events[i].res); status = 2; }
            done += n;
        }
        if (status) break;
        if (pread(buffered, check, FILE_SIZE, 0) != FILE_SIZE) { perror("pread"); status = 2; break; }
        for (int i = 0; i < FILE_SIZE; i++) {
            if ((unsigned char)check[i] != byte) {
                fprintf(stderr, "stale data from buffer read: round %ld, offset %d: 0x%02x, expected 0x%02x\n",
                        rounds, i, (unsigned char)check[i], byte);
                status = 1;
                break;
            }
        }
        rounds++;
    }
    for (int i = 0; i < readers; i++) kill(pids[i], SIGKILL);
    for (int i = 0; i < readers; i++) waitpid(pids[i], NULL, 0);
    io_destroy(ctx);
    printf("rounds %ld status %d\n", rounds, status);
    return status;
}
"""#
