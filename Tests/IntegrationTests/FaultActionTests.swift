// The actions other than fail: stall (until release, or a timeout), delay,
// drop (a write acknowledged, never stored) and short writes.
import Foundation
import Glibc
import Testing

/// What the writer thread of a stall test saw.
private struct WriterResult: Sendable {
    var written: Outcome
    var synced: Outcome
    var closed: Outcome
}

/// open + write + fsync + close of `data` at `path`.
private func writeAndSync(_ path: String, _ data: [UInt8]) -> WriterResult {
    let opened = openFile(path, O_CREAT | O_WRONLY | O_CLOEXEC)
    guard opened.ok else { return WriterResult(written: opened, synced: opened, closed: opened) }
    let fd = Int32(opened.value)
    let written = writeBytes(fd, data)
    let synced = sys { fsync(fd) }
    return WriterResult(written: written, synced: synced, closed: sys { close(fd) })
}

extension AllMountTests {
    // Every call that may block under a stall or delay runs through
    // `fs.call`/`fs.finish`: a broken stall fails the test, never hangs it.
    @Suite(.serialized, .timeLimit(.minutes(5)))
    struct FaultActionTests {
        @Test("stall writeback: write+fsync blocks until release, then completes with the data stored")
        func stallUntilRelease() throws {
            try withMount { fs in
                try fs.arm("stall writeback path=big.dat")
                let data = pattern(file: 6, offset: 0, count: 256 << 10)
                let path = fs.path("big.dat"), other = fs.path("other.dat")
                let writer = BackgroundCall { writeAndSync(path, data) }
                // Bounded polling: the writeback write reaches the daemon and is held.
                let stalled = pollUntil(polls: 3000) { fs.counter("writeback", "stalled_now") > 0 }
                #expect(stalled, "no writeback write stalled; stats: \(fs.stats()["writeback"] ?? [:])")
                #expect(writer.result == nil, "the writer finished although its writeback is stalled: \(String(describing: writer.result))")
                // Other files are not held up meanwhile.
                let otherWrites = fs.call("a write and a truncate of other.dat during the stall", within: 30) { () -> [Outcome] in
                    let opened = openFile(other, O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC)
                    guard opened.ok else { return [opened] }
                    let written = writeBytes(Int32(opened.value), Array("not stalled".utf8))
                    return [written, sys { close(Int32(opened.value)) }, sys { Glibc.truncate(other, 3) }]
                }
                #expect(otherWrites == [Outcome(value: 11, errno: 0), .success, .success], "\(String(describing: otherWrites))")
                #expect(writer.result == nil, "the writer finished before release")

                try fs.arm("release")
                let result = fs.finish(writer, "the stalled writer after release", within: 60)
                if let result {
                    #expect(result.written.value == data.count, "write: \(result.written)")
                    #expect(result.synced.ok, "fsync after release: \(result.synced)")
                    #expect(result.closed.ok, "close: \(result.closed)")
                }
                #expect(try backingBytes(fs, "big.dat") == data, "after release the data is in the backing file")
                #expect(fs.counter("writeback", "stalled_now") == 0)
                #expect(fs.counter("writeback", "stalled_total") >= 1)
                let actions = fs.events().filter { $0.path == "big.dat" }.map(\.action)
                #expect(actions.contains("stall") && actions.contains("release"), "events: \(actions)")
            }
        }

        @Test("stall with timeout=1s lets go by itself (after 1 s, well within 30 s)")
        func stallTimeout() throws {
            try withMount { fs in
                try fs.arm("stall writeback path=t.dat timeout=1s")
                let data = pattern(file: 7, offset: 0, count: 64 << 10)
                let fd = try openOrThrow(fs.path("t.dat"), O_CREAT | O_WRONLY)
                #expect(writeBytes(fd, data).value == data.count)
                let timed = fs.call("fsync under a stall with timeout=1s", within: 30) { () -> (Outcome, UInt64) in
                    let start = monotonicNow()
                    let synced = sys { fsync(fd) }
                    return (synced, monotonicNow() - start)
                }
                if let (synced, elapsed) = timed {
                    #expect(synced.ok, "fsync after the stall timed out: \(synced)")
                    #expect(elapsed >= 1_000_000_000, "fsync took \(elapsed / 1_000_000) ms; the stall holds at least 1 s")
                }
                #expect(sys { close(fd) }.ok)
                #expect(try backingBytes(fs, "t.dat") == data)
                let actions = fs.events().map(\.action)
                #expect(actions.contains("stall") && actions.contains("release"), "\(actions)")
            }
        }

        @Test("delay fsync 300ms: fsync takes at least 300 ms (and returns within 30 s)")
        func delayFsync() throws {
            try withMount { fs in
                let fd = try openOrThrow(fs.path("d.dat"), O_CREAT | O_WRONLY)
                defer { close(fd) }
                #expect(writeBytes(fd, Array("delayed".utf8)).value == 7)
                try fs.arm("delay fsync 300ms path=d.dat")
                let timed = fs.call("fsync under delay 300ms", within: 30) { () -> (Outcome, UInt64) in
                    let start = monotonicNow()
                    let synced = sys { fsync(fd) }
                    return (synced, monotonicNow() - start)
                }
                if let (synced, elapsed) = timed {
                    #expect(synced.ok, "\(synced)")
                    #expect(elapsed >= 300_000_000, "fsync took \(elapsed / 1_000_000) ms, less than the 300 ms delay")
                }
                #expect(fs.counter("fsync", "delayed") == 1)
                #expect(fs.events().contains { $0.action == "delay" && $0.op == "fsync" && $0.path == "d.dat" })
            }
        }

        @Test("drop syncwrite (no writeback cache): write() returns the full length, nothing is stored")
        func dropSyncWrite() throws {
            try withMount(options: ["nowriteback"], prepare: { try writeFile($0 + "/drop.dat", "old contents") }) { fs in
                try fs.arm("drop syncwrite path=drop.dat")
                let data = pattern(file: 8, offset: 0, count: 8192)
                let fd = try openOrThrow(fs.path("drop.dat"), O_WRONLY)
                let written = pwriteBytes(fd, data, at: 100)
                #expect(written == Outcome(value: data.count, errno: 0), "dropped write: \(written)")
                #expect(sys { fsync(fd) }.ok)
                #expect(sys { close(fd) }.ok)
                #expect(try backingBytes(fs, "drop.dat") == Array("old contents".utf8), "the backing file is untouched")
                // Linux 6.18 cuts this unaligned write-through write in two at the
                // first page boundary (the partly written page is not uptodate):
                // FUSE_WRITEs [100, 4096) and [4096, 8292). Both are dropped.
                let drops = fs.events().filter { $0.action == "drop" && $0.op == "syncwrite" }
                #expect(drops.reduce(0) { $0 + $1.length } == 8192, "dropped requests cover the write: \(drops)")
                #expect(drops.first?.offset == 100 && drops.first?.path == "drop.dat", "\(drops)")
                #expect(fs.counter("syncwrite", "dropped") == Int64(drops.count))
            }
        }

        @Test("short syncwrite bytes=100 (no writeback cache): write() returns 100, exactly those bytes are stored")
        func shortSyncWrite() throws {
            try withMount(options: ["nowriteback"]) { fs in
                try fs.arm("short syncwrite bytes=100 path=short.dat")
                let data = pattern(file: 9, offset: 0, count: 4096)
                let fd = try openOrThrow(fs.path("short.dat"), O_CREAT | O_WRONLY)
                let written = writeBytes(fd, data)
                #expect(written == Outcome(value: 100, errno: 0), "short write: \(written)")
                #expect(sys { close(fd) }.ok)
                #expect(try backingBytes(fs, "short.dat") == Array(data.prefix(100)), "backing holds exactly the first 100 bytes")
                #expect(summary(fs.path("short.dat"))?.size == 100, "size through the mount")
                #expect(fs.counter("syncwrite", "shortened") == 1)
            }
        }

        @Test("drop writeback (writeback cache): write and fsync succeed, the data is silently lost")
        func dropWriteback() throws {
            try withMount { fs in
                try fs.arm("drop writeback path=lost.dat")
                let data = pattern(file: 10, offset: 0, count: 32 << 10)
                let result = writeAndSync(fs.path("lost.dat"), data)
                #expect(result.written.value == data.count, "\(result.written)")
                #expect(result.synced.ok, "fsync is told nothing: \(result.synced)")
                #expect(result.closed.ok)
                // The file exists (its create was not dropped) and holds no byte of
                // the data: the pattern never has a 0, so this checks every page.
                let backing = try backingBytes(fs, "lost.dat")
                let pagesWithData = stride(from: 0, to: backing.count, by: 4096).filter { start in
                    backing[start..<min(start + 4096, backing.count)].contains { $0 != 0 }
                }
                #expect(pagesWithData.isEmpty, "backing file (\(backing.count) bytes) holds data in the pages at \(pagesWithData)")
                #expect(fs.counter("writeback", "dropped") >= 1)
                let drops = fs.events().filter { $0.action == "drop" && $0.op == "writeback" && $0.writeback && $0.path == "lost.dat" }
                #expect(drops.reduce(0) { $0 + $1.length } >= Int64(data.count), "the dropped writebacks cover the 32 KiB: \(drops)")
            }
        }
    }
}
