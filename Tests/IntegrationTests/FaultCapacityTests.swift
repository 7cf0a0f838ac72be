// `capacity SIZE`: the mount acts as a disk of SIZE bytes: statfs shows it,
// writes past it fail with ENOSPC (at write() without the writeback cache,
// at fsync with it), deleting frees space, `capacity off` ends it.
import Glibc
import Testing

private struct Space: CustomStringConvertible {
    var total: Int, used: Int, blocks: UInt
    var description: String { "total \(total) used \(used) (blocks \(blocks))" }
}

private func space(_ path: String) throws -> Space {
    var st = statvfs()
    try check("statvfs \(path)", sys { statvfs(path, &st) })
    let unit = Int(st.f_frsize)
    return Space(total: Int(st.f_blocks) * unit, used: Int(st.f_blocks - st.f_bfree) * unit, blocks: UInt(st.f_blocks))
}

private let chunk = 64 << 10

extension AllMountTests {
    @Suite(.serialized, .timeLimit(.minutes(5)))
    struct FaultCapacityTests {
        @Test("capacity 1M without the writeback cache: statfs, ENOSPC at write(), unlink frees, capacity off")
        func capacityWithoutCache() throws {
            let old = pattern(file: 20, offset: 0, count: 256 << 10)
            try withMount(options: ["nowriteback"], prepare: { try writeFile($0 + "/old", old) }) { fs in
                let backingBlocks = try space(fs.source).blocks
                #expect(try space(fs.mountpoint).blocks == backingBlocks, "before capacity: the backing file system's size")

                try fs.arm("capacity 1M")
                let limited = try space(fs.mountpoint)
                #expect(limited.total == 1 << 20, "statfs with capacity 1M: \(limited)")
                #expect(limited.used == 256 << 10, "used = the 256 KiB file already there: \(limited)")
                #expect(fs.controlText().contains("# capacity 1048576 bytes, used 262144 bytes"), "\(fs.controlText())")

                // 2 MiB in 64 KiB writes: 768 KiB fit, the next write fails.
                let fd = try openOrThrow(fs.path("big"), O_CREAT | O_WRONLY)
                var accepted = 0
                var failure: Outcome?
                for index in 0..<32 {
                    let written = writeBytes(fd, pattern(file: 21, offset: index * chunk, count: chunk))
                    if !written.ok { failure = written; break }
                    #expect(written.value == chunk)
                    accepted += written.value
                }
                #expect(failure?.errno == ENOSPC, "the write past the limit: \(String(describing: failure))")
                #expect(accepted == 768 << 10, "bytes accepted before ENOSPC")
                #expect(try space(fs.mountpoint).used == 1 << 20, "full")
                #expect(summary(fs.backing("big"))?.size == 768 << 10)
                #expect(fs.events().contains { $0.rule == "capacity" && $0.action == "fail" && $0.errno == ENOSPC && $0.path == "big" })

                // Deleting a file frees its space: a new 256 KiB write fits, one more byte does not.
                try check("unlink", sys { unlink(fs.path("old")) })
                #expect(try space(fs.mountpoint).used == 768 << 10, "after unlink")
                let fresh = try openOrThrow(fs.path("fresh"), O_CREAT | O_WRONLY)
                #expect(writeBytes(fresh, pattern(file: 22, offset: 0, count: 256 << 10)).value == 256 << 10, "fits after the unlink")
                #expect(writeBytes(fresh, [1]).errno == ENOSPC, "one byte more does not")
                #expect(sys { close(fresh) }.ok)
                #expect(sys { close(fd) }.ok)

                // A truncation frees space too.
                try check("truncate", sys { Glibc.truncate(fs.path("big"), 0) })
                #expect(try space(fs.mountpoint).used == 256 << 10, "after truncating big to 0")

                try fs.arm("capacity off")
                #expect(try space(fs.mountpoint).blocks == backingBlocks, "capacity off: the backing file system's size again")
                #expect(!fs.controlText().contains("# capacity"))
                let after = try openOrThrow(fs.path("after"), O_CREAT | O_WRONLY)
                #expect(writeBytes(after, pattern(file: 23, offset: 0, count: 2 << 20)).value == 2 << 20, "no limit any more")
                #expect(sys { close(after) }.ok)
            }
        }

        @Test("capacity 1M with the writeback cache: write() succeeds, fsync reports ENOSPC")
        func capacityWithCache() throws {
            try withMount { fs in
                try fs.arm("capacity 1M")
                #expect(try space(fs.mountpoint).total == 1 << 20)
                let fd = try openOrThrow(fs.path("big"), O_CREAT | O_WRONLY)
                for index in 0..<32 {
                    let written = writeBytes(fd, pattern(file: 24, offset: index * chunk, count: chunk))
                    #expect(written.value == chunk, "write() #\(index) only fills the page cache: \(written)")
                }
                let synced = sys { fsync(fd) }
                #expect(synced.errno == ENOSPC, "fsync: \(synced)")
                #expect(sys { close(fd) }.ok)
                // What fit is the start of the data, no more than the capacity.
                let stored = try backingBytes(fs, "big")
                #expect(stored.count > 0 && stored.count <= 1 << 20, "the backing file holds \(stored.count) bytes, capacity 1 MiB")
                let expected = pattern(file: 24, offset: 0, count: stored.count)
                #expect(stored == expected, "the backing file is not the data's first \(stored.count) bytes: first difference at \(String(describing: firstDifference(stored, expected)))")
                #expect(fs.events().contains { $0.rule == "capacity" && $0.op == "writeback" && $0.errno == ENOSPC && $0.writeback })
                // Deleting frees the space: a new file fits and syncs.
                try check("unlink", sys { unlink(fs.path("big")) })
                #expect(try space(fs.mountpoint).used == 0)
                let result = try openOrThrow(fs.path("small"), O_CREAT | O_WRONLY)
                #expect(writeBytes(result, pattern(file: 25, offset: 0, count: 512 << 10)).value == 512 << 10)
                #expect(sys { fsync(result) }.ok, "512 KiB fit after the unlink")
                #expect(sys { close(result) }.ok)
                try fs.arm("capacity off")
                #expect(try space(fs.mountpoint).blocks == (try space(fs.source)).blocks)
            }
        }
    }
}
