// The caching options: with or without the writeback cache, with direct_io,
// fsync puts the data in the backing file; with nocache, changes made
// directly in the backing dir show through the mount at once.
import Foundation
import Glibc
import Testing

extension AllMountTests {
    @Suite(.timeLimit(.minutes(5)))
    struct OptionsTests {
        @Test("16 MiB written, then fsync: the data is in the backing file",
              arguments: [[], ["nowriteback"], ["direct_io"]])
        func writeThenFsync(options: [String]) throws {
            let data = pattern(file: 13, offset: 0, count: 16 << 20)
            try withMount(options: options) { fs in
                let fd = Int32(try check("create", openFile(fs.path("big"), O_CREAT | O_WRONLY | O_CLOEXEC)))
                for offset in stride(from: 0, to: data.count, by: 1 << 20) {
                    let written = writeBytes(fd, Array(data[offset..<(offset + (1 << 20))]))
                    #expect(written.value == 1 << 20, "write at \(offset) with -o \(options): \(written)")
                }
                let synced = sys { fsync(fd) }
                #expect(synced.ok, "fsync with -o \(options): \(synced)")
                // Still mounted and open: fsync alone must have put the data there.
                let backing = try readFile(fs.backing("big")).get()
                #expect(backing.count == data.count, "backing file size with -o \(options)")
                #expect(firstDifference(backing, data) == nil, "backing file differs at \(firstDifference(backing, data) ?? -1) with -o \(options)")
                #expect(sys { close(fd) }.ok)
                #expect((try readFile(fs.path("big")).get()) == data, "read back through the mount with -o \(options)")
            }
        }

        @Test("a write moves the mtime seen through the mount forward",
              arguments: [[], ["nowriteback"], ["direct_io"]])
        func writeUpdatesMtime(options: [String]) throws {
            let old = 1_000_000_000
            try withMount(options: options, prepare: { try writeFile($0 + "/f", "0123456789") }) { fs in
                try check("utimensat", setTimes(fs.path("f"), atime: (old, 0), mtime: (old, 0)))
                let fd = Int32(try check("open", openFile(fs.path("f"), O_WRONLY | O_CLOEXEC)))
                #expect(pwriteBytes(fd, Array("new".utf8), at: 0).value == 3)
                #expect(sys { close(fd) }.ok)
                let throughMount = statOf(fs.path("f")).1.st_mtim.tv_sec, backing = statOf(fs.backing("f")).1.st_mtim.tv_sec
                #expect(throughMount > old, "mtime through the mount after a write with -o \(options): \(throughMount); in the backing file: \(backing)")
            }
        }

        @Test("readahead: auto follows the backing disk up to 1 MiB, readahead=SIZE sets it, a bad size is refused")
        func readahead() throws {
            func majorMinor(_ device: dev_t) -> String {
                let d = UInt64(device)
                return "\(((d >> 8) & 0xfff) | ((d >> 32) & ~0xfff)):\((d & 0xff) | ((d >> 12) & 0xffff_ff00))"
            }
            func mountReadahead(_ fs: MountedFS) -> Int? {
                var st = stat()
                guard stat(fs.mountpoint, &st) == 0 else { return nil }
                return Int(textOfFile("/sys/class/bdi/\(majorMinor(st.st_dev))/read_ahead_kb")
                    .trimmingCharacters(in: .whitespacesAndNewlines))
            }
            try withMount { fs in
                // The disk under the backing directory, found independently of the daemon.
                var st = stat()
                #expect(stat(fs.source, &st) == 0)
                let dev = majorMinor(st.st_dev)
                let disk = ["/sys/dev/block/\(dev)/queue/read_ahead_kb", "/sys/dev/block/\(dev)/../queue/read_ahead_kb"]
                    .lazy.compactMap { Int(textOfFile($0).trimmingCharacters(in: .whitespacesAndNewlines)) }.first
                let expected = disk.map { min($0, 1024) } ?? 128
                #expect(pollUntil { mountReadahead(fs) == expected }, "read_ahead_kb \(mountReadahead(fs) ?? -1), disk \(disk ?? -1)")
            }
            try withMount(options: ["readahead=256K"]) { fs in
                #expect(pollUntil { mountReadahead(fs) == 256 }, "read_ahead_kb \(mountReadahead(fs) ?? -1)")
            }
            try withTemporaryDirectory("readahead") { dir in
                let result = try runCommand(try FaultFSBinary.path(), ["mount", "-o", "readahead=1.5K", dir, dir], limitSeconds: 60)
                defer { _ = umount2(dir, Int32(MNT_DETACH)) }  // only if it mounted after all
                #expect(result.status != 0, "\(result)")
                #expect(result.stderr.contains("readahead=1.5K"), "stderr: \(result.stderr)")
            }
        }

        @Test("-o nocache: changes made directly in the backing dir are seen through the mount at once")
        func nocacheSeesBackingChanges() throws {
            try withMount(options: ["nocache"], prepare: { try writeFile($0 + "/f", "first") }) { fs in
                #expect((try readFile(fs.path("f")).get()) == Array("first".utf8))
                try writeFile(fs.backing("f"), "second, and longer")
                #expect((try readFile(fs.path("f")).get()) == Array("second, and longer".utf8))
                #expect(summary(fs.path("f"))?.size == 18)
                try check("chmod", sys { chmod(fs.backing("f"), 0o600) })
                #expect(summary(fs.path("f"))?.permissions == 0o600)

                #expect(statOf(fs.path("new")).0.errno == ENOENT)
                try writeFile(fs.backing("new"), "new")
                #expect((try readFile(fs.path("new")).get()) == Array("new".utf8))
                try check("unlink", sys { unlink(fs.backing("new")) })
                #expect(statOf(fs.path("new")).0.errno == ENOENT)

                try check("mkdir", sys { mkdir(fs.backing("dir"), 0o755) })
                #expect(listDirectory(fs.mountpoint).1.map(\.name) == ["dir", "f"])
            }
        }
    }
}
