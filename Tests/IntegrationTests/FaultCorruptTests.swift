// Silent corruption on a real mount: `corrupt write` stores changed bytes
// while write() and fsync() succeed; `corrupt read` hands changed bytes to
// the reader (and to the page cache) while the backing file stays intact.
import Glibc
import Testing

/// The offsets where two byte arrays differ (over the shorter one), and the
/// difference in length.
private func differingOffsets(_ a: [UInt8], _ b: [UInt8]) -> [Int64] {
    (0..<min(a.count, b.count)).filter { a[$0] != b[$0] }.map { Int64($0) }
}

extension AllMountTests {
    @Suite(.serialized, .timeLimit(.minutes(3)))
    struct FaultCorruptTests {
        @Test("corrupt write bytes=3 path=f (writeback cache): write and fsync succeed, the backing file differs in exactly 3 bytes")
        func corruptWriteback() throws {
            try withMount { fs in
                try fs.arm("corrupt write bytes=3 path=f")
                let data = pattern(file: 21, offset: 0, count: 4096)
                let fd = try openOrThrow(fs.path("f"), O_CREAT | O_WRONLY)
                #expect(writeBytes(fd, data) == Outcome(value: data.count, errno: 0))
                #expect(sys { fsync(fd) }.ok)
                #expect(sys { close(fd) }.ok)
                let backing = try backingBytes(fs, "f")
                #expect(backing.count == data.count)
                let changed = differingOffsets(data, backing)
                #expect(changed.count == 3, "backing differs at \(changed)")
                #expect(changed.allSatisfy { backing[Int($0)] == ~data[Int($0)] }, "pattern=flip inverts the bytes")

                let hits = fs.events().filter { $0.action == "corrupt" }
                #expect(hits.count == 1, "\(hits)")
                if let hit = hits.first {
                    #expect(hit.path == "f" && hit.op == "writeback" && hit.writeback, "\(hit)")
                    #expect(hit.offset == 0 && hit.length == 4096 && hit.changed == 3, "\(hit)")
                    #expect(hit.changedOffsets == changed, "\(hit)")
                }
                #expect(fs.counter("writeback", "corrupted") == 1)

                // The page cache still holds the data as written; once dropped,
                // reads show what was stored.
                let reader = try openOrThrow(fs.path("f"), O_RDONLY)
                defer { close(reader) }
                #expect(preadBytes(reader, count: 8192, at: 0).1 == data, "cached pages: the data as written")
                #expect(posix_fadvise(reader, 0, 0, POSIX_FADV_DONTNEED) == 0)
                #expect(preadBytes(reader, count: 8192, at: 0).1 == backing, "after the cache is dropped: the stored bytes")
            }
        }

        @Test("corrupt syncwrite (no writeback cache): write() returns the full count, the stored bytes are zeroed")
        func corruptSyncWrite() throws {
            try withMount(options: ["nowriteback"]) { fs in
                try fs.arm("corrupt write bytes=5 pattern=zero path=g seed=4")
                let data = pattern(file: 22, offset: 0, count: 1000)
                let fd = try openOrThrow(fs.path("g"), O_CREAT | O_WRONLY)
                #expect(pwriteBytes(fd, data, at: 0) == Outcome(value: data.count, errno: 0))
                #expect(sys { close(fd) }.ok)
                let backing = try backingBytes(fs, "g")
                let changed = differingOffsets(data, backing)
                #expect(changed.count == 5 && changed.allSatisfy { backing[Int($0)] == 0 }, "\(changed)")
                let hit = fs.events().first { $0.action == "corrupt" }
                #expect(hit?.op == "syncwrite" && hit?.changed == 5 && hit?.changedOffsets == changed, "\(String(describing: hit))")
            }
        }

        @Test("corrupt read: the reader gets changed bytes, the backing file is intact; the page cache keeps them until dropped")
        func corruptRead() throws {
            let data = pattern(file: 23, offset: 0, count: 16384)
            try withMount(prepare: { try writeFile($0 + "/r.sst", data) }) { fs in
                try fs.arm("corrupt read bytes=2 path=*.sst count=1 seed=3")
                let fd = try openOrThrow(fs.path("r.sst"), O_RDONLY)
                defer { close(fd) }
                let (first, got) = preadBytes(fd, count: data.count, at: 0)
                #expect(first.value == data.count)
                let changed = differingOffsets(data, got)
                #expect(changed.count == 2, "read differs at \(changed)")
                #expect(try backingBytes(fs, "r.sst") == data, "the backing file is intact")

                let hit = fs.events().first { $0.action == "corrupt" }
                #expect(hit != nil)
                if let hit {
                    #expect(hit.path == "r.sst" && hit.op == "read" && hit.changed == 2, "\(hit)")
                    #expect(hit.changedOffsets == changed, "\(hit)")
                    let start = hit.offset ?? -1
                    #expect(changed.allSatisfy { $0 >= start && $0 < start + hit.length }, "\(hit)")
                }
                #expect(fs.counter("read", "corrupted") == 1)

                // The corrupted bytes filled the page cache: with the rule gone,
                // a read still sees them, until the cached pages are dropped.
                try fs.arm("clear")
                #expect(preadBytes(fd, count: data.count, at: 0).1 == got, "cached reads keep the corrupted bytes")
                #expect(posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) == 0)
                #expect(preadBytes(fd, count: data.count, at: 0).1 == data, "once the cache is dropped the file reads intact")
            }
        }
    }
}
