// Injected errors and how the kernel hands them to applications, on a real
// mount: a failed writeback surfaces at fsync once and the data is lost
// (fsyncgate); without the writeback cache write() itself fails; flush
// errors come out of close(); fsync/fdatasync errors; an mmap store
// surfaced at msync(MS_SYNC). See docs/kernel-behaviour.md.
import Foundation
import Glibc
import Testing

extension AllMountTests {
    @Suite(.serialized, .timeLimit(.minutes(5)))
    struct FaultWritebackTests {
        @Test("writeback ENOSPC: write() succeeds, fsync() says ENOSPC once, the data never reaches the backing file")
        func writebackENOSPCAtFsync() throws {
            try withMount { fs in
                try fs.arm("fail writeback ENOSPC path=*.wal count=1")
                let data = pattern(file: 1, offset: 0, count: 16384)
                let fd = try openOrThrow(fs.path("a.wal"), O_CREAT | O_RDWR)
                let written = writeBytes(fd, data)
                #expect(written == Outcome(value: data.count, errno: 0), "write() goes to the page cache: \(written)")
                let first = sys { fsync(fd) }
                #expect(first.errno == ENOSPC, "first fsync: \(first)")
                let second = sys { fsync(fd) }
                #expect(second.ok, "second fsync: the error is reported once (errseq), then gone: \(second)")
                // The failed pages are clean, not redirtied: the page cache still
                // shows the data (until evicted) while the backing file never got it.
                #expect(preadBytes(fd, count: data.count, at: 0).1 == data, "read through the mount (page cache)")
                let closed = sys { close(fd) }
                #expect(closed.ok, "close after fsync saw the error: nothing left to report: \(closed)")
                let backing = try backingBytes(fs, "a.wal")
                #expect(backing.isEmpty && !containsBytes(backing, data), "backing file holds \(backing.count) bytes; the lost write must not be there")

                let events = fs.events()
                let hit = events.first { $0.action == "fail" && $0.op == "writeback" }
                #expect(hit != nil, "no writeback failure in events: \(events)")
                if let hit {
                    #expect(hit.errno == 28 && hit.errnoName == "ENOSPC" && hit.writeback && hit.path == "a.wal", "\(hit)")
                    #expect(hit.pid == 0 && hit.comm == nil, "writeback carries no caller: \(hit)")
                    #expect(hit.offset == 0 && hit.length == Int64(data.count), "\(hit)")
                }
                #expect(fs.ruleLines().first?.hasPrefix("fail writeback ENOSPC id=r1 path=*.wal count=1") == true, "\(fs.controlText())")
                #expect(fs.controlText().contains("matched=1 hits=1 dormant"), "\(fs.controlText())")
            }
        }

        @Test("a fsync on another descriptor opened before the error also hears about it once")
        func writebackErrorSeenByEveryOpenFile() throws {
            try withMount { fs in
                try fs.arm("fail writeback EIO path=shared.dat count=1")
                let writer = try openOrThrow(fs.path("shared.dat"), O_CREAT | O_RDWR)
                let other = try openOrThrow(fs.path("shared.dat"), O_RDONLY)
                defer { close(other) }
                #expect(writeBytes(writer, pattern(file: 2, offset: 0, count: 4096)).value == 4096)
                #expect(sys { fsync(writer) }.errno == EIO)
                #expect(sys { fsync(writer) }.ok, "told once per open file description")
                #expect(sys { fsync(other) }.errno == EIO, "the other open file has its own errseq cursor")
                #expect(sys { fsync(other) }.ok)
                #expect(sys { close(writer) }.ok)
            }
        }

        @Test("without the writeback cache write() itself returns the injected errno",
              arguments: ["fail write ENOSPC", "fail syncwrite ENOSPC"])
        func syncWriteFails(rule: String) throws {
            try withMount(options: ["nowriteback"]) { fs in
                try fs.arm(rule + " path=s.dat")
                let data = pattern(file: 3, offset: 0, count: 8192)
                let fd = try openOrThrow(fs.path("s.dat"), O_CREAT | O_WRONLY)
                let written = writeBytes(fd, data)
                #expect(written.errno == ENOSPC, "write() with \(rule): \(written)")
                #expect(sys { fsync(fd) }.ok, "nothing pending: fsync has nothing to report")
                #expect(sys { close(fd) }.ok)
                #expect(try backingBytes(fs, "s.dat").isEmpty)
                let hit = fs.events().first { $0.action == "fail" }
                #expect(hit?.op == "syncwrite" && hit?.writeback == false && hit?.errno == ENOSPC && hit?.path == "s.dat",
                        "\(hit.map(String.init(describing:)) ?? "no event")")
                #expect(hit?.pid == currentThreadID(), "a synchronous write carries the caller's (thread) id: \(hit.map(String.init(describing:)) ?? "")")
            }
        }

        @Test("flush EIO: close() returns EIO", arguments: [[String](), ["nowriteback"]])
        func flushEIOAtClose(options: [String]) throws {
            try withMount(options: options) { fs in
                try fs.arm("fail flush EIO path=f.dat")
                let data = pattern(file: 4, offset: 0, count: 4096)
                let fd = try openOrThrow(fs.path("f.dat"), O_CREAT | O_WRONLY)
                #expect(writeBytes(fd, data).value == data.count)
                let closed = sys { close(fd) }
                #expect(closed.errno == EIO, "close with -o \(options): \(closed)")
                // close() wrote the dirty pages (write_inode_now) before FUSE_FLUSH failed.
                #expect(try backingBytes(fs, "f.dat") == data, "the data reached the backing file before the flush failed")
                // Another file is not targeted.
                let other = try openOrThrow(fs.path("g.dat"), O_CREAT | O_WRONLY)
                #expect(sys { close(other) }.ok)
                #expect(fs.counter("flush", "failed") == 1, "\(fs.stats()["flush"] ?? [:])")
            }
        }

        @Test("fsync / fdatasync EIO, with the writeback cache and without",
              arguments: [[String](), ["nowriteback"]], ["fsync", "fdatasync"])
        func fsyncFailure(options: [String], op: String) throws {
            try withMount(options: options) { fs in
                // The word for one alone: `fsync` covers both (see fsyncWordCoversFdatasync).
                try fs.arm("fail \(op == "fsync" ? "fsync-only" : op) EIO path=y.dat")
                let data = pattern(file: 5, offset: 0, count: 8192)
                let fd = try openOrThrow(fs.path("y.dat"), O_CREAT | O_RDWR)
                defer { close(fd) }
                #expect(writeBytes(fd, data).value == data.count)
                let targeted = op == "fsync" ? sys { fsync(fd) } : sys { fdatasync(fd) }
                let untargeted = op == "fsync" ? sys { fdatasync(fd) } : sys { fsync(fd) }
                #expect(targeted.errno == EIO, "\(op) with -o \(options): \(targeted)")
                #expect(untargeted.ok, "the other of fsync/fdatasync is not targeted by \(op): \(untargeted)")
                // A FUSE_FSYNC error is not sticky, but the rule still holds: asked again, failed again.
                let again = op == "fsync" ? sys { fsync(fd) } : sys { fdatasync(fd) }
                #expect(again.errno == EIO, "\(op) again: \(again)")
                try fs.arm("clear")
                #expect((op == "fsync" ? sys { fsync(fd) } : sys { fdatasync(fd) }).ok, "after clear")
                #expect(try backingBytes(fs, "y.dat") == data, "the data was written before FUSE_FSYNC failed")
                #expect(fs.counter(op, "failed") == 2)
            }
        }

        @Test("`fail fsync` also fails fdatasync (what sqlite calls), and cat control says so")
        func fsyncWordCoversFdatasync() throws {
            try withMount { fs in
                try fs.arm("fail fsync EIO path=z.dat")
                #expect(fs.controlText().contains("# note: fsync means fsync(2) and fdatasync(2)"), "\(fs.controlText())")
                let fd = try openOrThrow(fs.path("z.dat"), O_CREAT | O_RDWR)
                defer { close(fd) }
                #expect(writeBytes(fd, [1, 2, 3]).ok)
                #expect(sys { fdatasync(fd) }.errno == EIO)
                #expect(sys { fsync(fd) }.errno == EIO)
                #expect(fs.counter("fdatasync", "failed") == 1 && fs.counter("fsync", "failed") == 1, "\(fs.stats())")
            }
        }

        // The notes say writeback writes only come with the writeback cache; on
        // this kernel (6.18) a shared mmap store is written back as a writeback
        // write (FUSE_WRITE_CACHE) with -o nowriteback too, so the rule hits
        // there as well -- while `cat control` warns that it cannot.
        @Test("an mmap store surfaced at msync(MS_SYNC)", arguments: [[String](), ["nowriteback"]])
        func mmapStoreAtMsync(options: [String]) throws {
            try withMount(options: options) { fs in
                try fs.arm("fail writeback EIO path=m.dat")
                let fd = try openOrThrow(fs.path("m.dat"), O_CREAT | O_RDWR)
                defer { close(fd) }
                try check("ftruncate", sys { ftruncate(fd, 4096) })
                guard let map = mmap(nil, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), map != MAP_FAILED else {
                    throw SetupError("mmap", Outcome(value: -1, errno: errno))
                }
                defer { munmap(map, 4096) }
                map.storeBytes(of: 0x4242_4242, as: UInt32.self)
                let synced = sys { msync(map, 4096, MS_SYNC) }
                #expect(synced.errno == EIO, "msync(MS_SYNC) with -o \(options): \(synced)")
                #expect(sys { msync(map, 4096, MS_SYNC) }.ok, "reported once")
                #expect(!containsBytes(try backingBytes(fs, "m.dat"), [0x42, 0x42, 0x42, 0x42]), "the store never reached the backing file")
                let hit = fs.events().first { $0.op == "writeback" }
                #expect(hit?.action == "fail" && hit?.writeback == true && hit?.path == "m.dat", "\(fs.events())")
            }
        }
    }
}
