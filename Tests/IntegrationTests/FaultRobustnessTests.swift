// The fault layer never takes the mount down: thousands of random control
// lines through the real control file, and every kind of fault in one mount,
// after which the mount still answers and `faultfs umount` exits 0.
import FaultRules
import Foundation
import Glibc
import Testing

/// A small deterministic generator for the random lines (xorshift64*).
private struct LineRandom {
    var state: UInt64
    mutating func next() -> UInt64 {
        state ^= state >> 12; state ^= state << 25; state ^= state >> 27
        return state &* 0x2545_F491_4F6C_DD1D
    }
    mutating func below(_ n: Int) -> Int { Int(next() % UInt64(max(n, 1))) }
    mutating func pick<T>(_ items: [T]) -> T { items[below(items.count)] }
    mutating func chance(_ percent: Int) -> Bool { below(100) < percent }
}

private let validLines = [
    "fail writeback ENOSPC path=*.wal count=1", "fail flush EIO", "delay write 200ms prob=0.1 seed=7",
    "stall writeback path=big.dat", "stall write timeout=1s", "release", "release r1", "drop write",
    "short write bytes=100", "short syncwrite", "capacity 64M", "capacity off", "clear", "reset-counters",
    "fail all EIO prob=0.5 seed=3", "fail create,mkdir EACCES path=d/**", "fail fsync 5 every=3 after=2",
    "delay 1.5s fsync", "fail setattr EPERM offset=4K-8K", "fail read EIO offset=1M-", "fail open ENOENT comm=dd",
    "fail rename EXDEV pid=42", "fail copy_file_range,fallocate ENOSPC id=cfr", "fail fsyncdir EIO # comment",
    "FAIL WRITE eio PATH=X.WAL", "delay read 10us id=a.b-c_d", "fail truncate EFBIG", "fail link,symlink EMLINK",
    "fail setxattr ENOTSUP", "fail unlink,rmdir EBUSY path=/abs/*.tmp", "fail mknod EPERM count=10",
    "stall fsync id=s timeout=250ms", "fail write ENOSPC prob=1e-05 seed=0", "   ", "# only a comment",
    "corrupt read bytes=2 pattern=random seed=1 path=*.sst", "corrupt write pattern=zero count=1",
]

private let pieces = [
    "fail", "delay", "stall", "drop", "short", "corrupt", "pattern=zero", "pattern=x", "clear", "release", "capacity", "reset-counters", "write", "writeback",
    "syncwrite", "flush", "fsync", "all", "EIO", "ENOSPC", "0", "512", "511", "-1", "path=", "path=**", "path=a**",
    "prob=0", "prob=0.5", "prob=1.5", "seed=9", "count=0", "count=1", "every=0", "after=", "offset=8K-4K",
    "offset=1-", "comm=abcdefghijklmnop", "comm=dd", "pid=0", "pid=2147483648", "timeout=0s", "bytes=1G", "id=",
    "id=bad/id", "id=ok", "200ms", "1h", "1.0000000001s", "64M", "off", "#", "=", ",", "write,,flush", "é", "\t",
    "ünïcode", "18446744073709551616",
]

/// A random line: a valid line, mutated or not, or a jumble of pieces.
private func randomLine(_ random: inout LineRandom) -> String {
    var scalars: [Character]
    if random.chance(35) {
        scalars = Array((0..<(1 + random.below(6))).map { _ in random.pick(pieces) }.joined(separator: " "))
    } else {
        scalars = Array(random.pick(validLines))
        if random.chance(60) {
            for _ in 0..<(1 + random.below(3)) {
                let position = random.below(scalars.count + 1)
                switch random.below(4) {
                case 0 where position < scalars.count: scalars.remove(at: position)
                case 1: scalars.insert(random.pick(Array("abz019=-,*/#. \u{e9}Ee")), at: position)
                case 2 where position < scalars.count: scalars[position] = random.pick(Array("xX9=,  -"))
                default: scalars.append(contentsOf: " " + random.pick(pieces))
                }
            }
        }
    }
    return String(scalars).replacingOccurrences(of: "\n", with: " ")
}

/// Feeds `count` random lines to the mount's control file, one write() each;
/// checks each against the pure parser and the control file's listing.
private func feedRandomLines(_ fs: MountedFS, count: Int, seed: UInt64) throws {
    var random = LineRandom(state: seed)
    let fd = try openOrThrow(fs.controlFile(), O_WRONLY)
    defer { close(fd) }
    // The engine numbers rules without id= r1, r2, ... and never reuses a
    // number: learn the next one from a probe rule.
    #expect(writeBytes(fd, Array("fail fsync EIO path=__probe__\n".utf8)).ok)
    let probe = fs.ruleLines().first ?? ""
    var nextAutoID = (probe.split(separator: " ").first { $0.hasPrefix("id=r") }.flatMap { Int($0.dropFirst(4)) } ?? 0) + 1
    #expect(nextAutoID > 1, "probe rule: \(probe)")
    #expect(writeBytes(fd, Array("clear\n".utf8)).ok)
    var accepted = 0
    for index in 0..<count {
        let line = randomLine(&random)
        let written = writeBytes(fd, Array((line + "\n").utf8))
        let parsed = parseControl(line)
        var expectAccepted = true
        var rule: Rule?
        switch parsed {
        case .failure: expectAccepted = false
        case .success(let commands):
            for command in commands {
                if case .clear(id: _?) = command { expectAccepted = false }  // no rules: unknown id
                if case .release(id: _?) = command { expectAccepted = false }  // likewise (no stall rule)
                if case .add(let added) = command { rule = added }
            }
        }
        if expectAccepted {
            #expect(written.value == line.utf8.count + 1, "line #\(index) \(line.debugDescription) should be accepted: \(written); \(fs.controlText())")
        } else {
            #expect(written.errno == EINVAL, "line #\(index) \(line.debugDescription) should be refused with EINVAL: \(written)")
        }
        guard written.ok else { continue }
        accepted += 1
        if var rule {
            if rule.id == nil {
                rule.id = "r\(nextAutoID)"
                nextAutoID += 1
            }
            let text = fs.controlText()
            #expect(text.contains(rule.description + "  # matched="), "line #\(index) \(line.debugDescription): control lacks \"\(rule)\":\n\(text)")
        }
        let cleared = writeBytes(fd, Array("clear\n".utf8))
        #expect(cleared.ok, "clear after line #\(index): \(cleared)")
    }
    #expect(accepted > count / 10 && accepted < count, "a mix of accepted (\(accepted)) and refused lines")
    #expect(writeBytes(fd, Array("capacity off\nrelease\n".utf8)).ok)
}

/// One hostile write to the control file, and whether it must be refused
/// whatever the parser thinks of the rest (it holds an unknown command).
private struct HostileWrite {
    var bytes: [UInt8]
    var mustBeRefused: Bool
}

/// Hostile input: random bytes (NULs, control bytes, invalid UTF-8, newlines),
/// a known-bad line after good ones (all or nothing), over-long tokens.
private func hostileWrite(_ random: inout LineRandom) -> HostileWrite {
    let bad = Array("\u{1}bogus\u{7f} \u{ff}".utf8)
    switch random.below(5) {
    case 0:
        return HostileWrite(bytes: (0..<(1 + random.below(400))).map { _ in UInt8(truncatingIfNeeded: random.next()) }, mustBeRefused: false)
    case 1:  // good lines, then a bad one: nothing applies, not even the clear
        var text = "clear\n"
        for index in 0..<random.below(200) { text += "fail flush EIO id=h\(index) path=__hostile__/\(index)\n" }
        return HostileWrite(bytes: Array(text.utf8) + bad + [10], mustBeRefused: true)
    case 2:  // an over-long unknown word
        return HostileWrite(bytes: Array("fail ".utf8) + [UInt8](repeating: UInt8(ascii: "x"), count: 1000 + random.below(60_000)) + [10], mustBeRefused: true)
    case 3:  // an over-long value, then a bad key
        return HostileWrite(bytes: Array("fail write EIO path=".utf8) + [UInt8](repeating: UInt8(ascii: "a"), count: 1000 + random.below(60_000))
                            + Array(" bogus=1\n".utf8), mustBeRefused: true)
    default:  // invalid UTF-8 and control bytes in the command word
        return HostileWrite(bytes: [0xff, 0xfe, 0xc0, 0x80, 0x00, 0x1b] + Array("[2Jfail flush EIO\n".utf8), mustBeRefused: true)
    }
}

/// Properties that do not depend on the parser: the daemon answers every
/// write (within 30 s), a refused write leaves the rule table as it was, and
/// control never echoes an over-long line or raw control bytes back.
private func feedHostileWrites(_ fs: MountedFS, count: Int, seed: UInt64) throws {
    var random = LineRandom(state: seed)
    let sentinel = ["fail fsync EIO id=sentinel1 path=__never__/*", "delay read 1ms id=sentinel2 path=__never__/*"]
    try fs.arm(sentinel.joined(separator: "\n"))
    let table = fs.ruleLines()
    #expect(table == sentinel, "\(fs.controlText())")
    let control = fs.controlFile()
    var refused = 0
    var overLongEchoes: [Int] = [], rawEchoes: [Int] = []
    for index in 0..<count {
        let hostile = hostileWrite(&random)
        let bytes = hostile.bytes
        let answer = fs.call("hostile control write #\(index) (\(bytes.count) bytes)", within: 30) { () -> Outcome in
            let opened = openFile(control, O_WRONLY | O_CLOEXEC)
            guard opened.ok else { return opened }
            defer { close(Int32(opened.value)) }
            return writeBytes(Int32(opened.value), bytes)
        }
        guard let answer else { return }  // recorded: the daemon did not answer
        if hostile.mustBeRefused {
            #expect(answer.errno == EINVAL, "hostile write #\(index) holds an unknown command: \(answer)")
        }
        let text = fs.controlText()
        if !answer.ok {
            refused += 1
            #expect(answer.errno == EINVAL, "hostile write #\(index) refused with \(answer)")
            #expect(fs.ruleLines() == table, "hostile write #\(index) was refused yet changed the rules: \(text.prefix(2000))")
        } else if fs.ruleLines() != table {
            try fs.arm("clear\n" + sentinel.joined(separator: "\n"))
        }
        let errorLines = text.split(separator: "\n").filter { $0.hasPrefix("# error") }
        if errorLines.contains(where: { $0.count > 1000 }) { overLongEchoes.append(index) }
        if errorLines.contains(where: { $0.unicodeScalars.contains { $0.value < 0x20 || $0.value == 0x7f } }) { rawEchoes.append(index) }
    }
    // The error echo is bounded and printable.
    #expect(overLongEchoes.isEmpty, "echoed lines over 1,000 characters after writes \(overLongEchoes.prefix(20))")
    #expect(rawEchoes.isEmpty, "raw control bytes echoed after writes \(rawEchoes.prefix(20))")
    #expect(refused > count / 2, "\(refused) of \(count) hostile writes refused")
    #expect(fs.isRunning, "the daemon died; log: \(fs.log.suffix(2000))")
    try fs.arm("clear")
}

extension AllMountTests {
    @Suite(.serialized, .timeLimit(.minutes(5)))
    struct FaultRobustnessTests {
        @Test("2,000 random and mutated control lines: each accepted (and listed canonically) or refused with EINVAL")
        func randomControlLines() throws {
            try withMount { fs in
                try feedRandomLines(fs, count: 2000, seed: 0x5EED_F417)
                #expect(fs.isRunning, "the daemon died; log: \(fs.log.suffix(2000))")
                #expect(fs.ruleLines().isEmpty, "\(fs.controlText())")
                try writeFile(fs.path("alive"), "still answering")
                #expect((try readFile(fs.path("alive")).get()) == Array("still answering".utf8))
                #expect(statOf(fs.mountpoint).0.ok)
            }
        }

        @Test("300 hostile control writes: each answered, a refused one changes no rule, no over-long echo")
        func hostileControlWrites() throws {
            try withMount { fs in
                try feedHostileWrites(fs, count: 300, seed: 0xBAD_F00D)
                try writeFile(fs.path("alive"), "still answering")
                #expect((try readFile(fs.path("alive")).get()) == Array("still answering".utf8))
                #expect(fs.ruleLines().isEmpty, "\(fs.controlText())")
            }
        }

        @Test("every kind of fault in one mount, then stat of the root works and faultfs umount exits 0")
        func gauntlet() throws {
            let fs = try MountedFS()
            var unmounted = false
            defer { if !unmounted { fs.unmount() } ; removeTree(fs.base) }

            // Writeback ENOSPC at fsync, flush EIO at close, fsync/fdatasync EIO.
            try fs.arm("fail writeback ENOSPC path=*.wal count=1", "fail flush EIO path=f.dat", "fail fdatasync EIO path=y.dat")
            var fd = try openOrThrow(fs.path("a.wal"), O_CREAT | O_RDWR)
            #expect(writeBytes(fd, pattern(file: 30, offset: 0, count: 8192)).value == 8192)
            #expect(sys { fsync(fd) }.errno == ENOSPC)
            close(fd)
            fd = try openOrThrow(fs.path("f.dat"), O_CREAT | O_RDWR)
            #expect(sys { close(fd) }.errno == EIO)
            fd = try openOrThrow(fs.path("y.dat"), O_CREAT | O_RDWR)
            #expect(sys { fdatasync(fd) }.errno == EIO)
            close(fd)

            // mmap + msync, stall + release, delay, drop, short (O_DIRECT writes are sync writes).
            try fs.arm("clear", "fail writeback EIO path=m.dat", "stall writeback path=s.dat", "delay fsync 50ms path=s.dat",
                       "drop writeback path=lost.dat", "short syncwrite bytes=512 path=short.dat")
            fd = try openOrThrow(fs.path("m.dat"), O_CREAT | O_RDWR)
            try check("ftruncate", sys { ftruncate(fd, 4096) })
            if let map = mmap(nil, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), map != MAP_FAILED {
                map.storeBytes(of: 7, as: UInt8.self)
                #expect(sys { msync(map, 4096, MS_SYNC) }.errno == EIO)
                munmap(map, 4096)
            } else {
                Issue.record("mmap failed: \(errno)")
            }
            close(fd)
            let stallPath = fs.path("s.dat")
            let writer = BackgroundCall { () -> Outcome in
                let opened = openFile(stallPath, O_CREAT | O_WRONLY | O_CLOEXEC)
                guard opened.ok else { return opened }
                _ = writeBytes(Int32(opened.value), [1, 2, 3])
                let synced = sys { fsync(Int32(opened.value)) }
                close(Int32(opened.value))
                return synced
            }
            #expect(pollUntil(polls: 3000) { fs.counter("writeback", "stalled_now") > 0 })
            #expect(writer.result == nil)
            try fs.arm("release")
            #expect(fs.finish(writer, "the stalled writer after release", within: 60)?.ok == true)
            try writeFile(fs.path("lost.dat"), pattern(file: 31, offset: 0, count: 4096))
            #expect(try backingBytes(fs, "lost.dat").isEmpty)
            fd = try openOrThrow(fs.path("short.dat"), O_CREAT | O_RDWR | Linux.O_DIRECT)
            try withAlignedBuffer(size: 4096) { buffer in
                #expect(sys { pwrite(fd, buffer.baseAddress, 4096, 0) }.value == 512, "O_DIRECT write shortened")
            }
            close(fd)

            // Capacity, then failures on every op with a workload of all kinds.
            try fs.arm("clear", "capacity 100K")
            fd = try openOrThrow(fs.path("cap"), O_CREAT | O_WRONLY | O_TRUNC)
            #expect(writeBytes(fd, pattern(file: 32, offset: 0, count: 200 << 10)).ok, "write() only fills the page cache")
            #expect(sys { fsync(fd) }.errno == ENOSPC, "past capacity 100K")
            close(fd)
            try fs.arm("capacity off", "fail all EIO prob=0.5 seed=11", "delay all 1ms prob=0.2 seed=5")
            for round in 0..<30 {
                let dir = fs.path("w\(round % 3)")
                _ = sys { mkdir(dir, 0o755) }
                let opened = openFile(dir + "/f", O_CREAT | O_RDWR | O_CLOEXEC)
                if opened.ok {
                    let handle = Int32(opened.value)
                    _ = writeBytes(handle, pattern(file: round, offset: 0, count: 5000))
                    _ = fallocate(handle, mode: 0, offset: 0, length: 8192)
                    _ = copyFileRange(from: handle, at: 0, to: handle, at: 10000, count: 100)
                    _ = preadBytes(handle, count: 100, at: 0)
                    _ = sys { fsync(handle) }
                    _ = sys { close(handle) }
                }
                _ = setxattr(dir + "/f", "user.k", [1])
                _ = sys { Glibc.truncate(dir + "/f", 10) }
                _ = sys { chmod(dir + "/f", 0o600) }
                _ = sys { symlink("f", dir + "/l\(round)") }
                _ = sys { link(dir + "/f", dir + "/h\(round)") }
                _ = sys { rename(dir + "/f", dir + "/g") }
                _ = sys { mknod(dir + "/p\(round)", S_IFIFO | 0o644, 0) }
                _ = listDirectory(dir)
                for name in listDirectory(dir).1.map(\.name) { _ = sys { unlink(dir + "/" + name) } }
                _ = sys { rmdir(dir) }
            }
            let failed = fs.stats().values.reduce(Int64(0)) { $0 + ($1["failed"] ?? 0) }
            #expect(failed > 0, "the workload met injected failures")

            // A storm of random control lines on top.
            try fs.arm("clear")
            try feedRandomLines(fs, count: 300, seed: 99)

            #expect(fs.isRunning, "the daemon died; log: \(fs.log.suffix(4000))")
            #expect(statOf(fs.mountpoint).0.ok, "stat of the root")
            #expect(listDirectory(fs.mountpoint).0.ok)
            let umount = try fs.faultfs(["umount", fs.mountpoint])
            #expect(umount.status == 0, "faultfs umount: \(umount)")
            #expect(pollUntil(polls: 1000) { !fs.isRunning }, "the daemon exits after the unmount")
            #expect(!MountTable.hasFaultFSMount(fs.mountpoint))
            unmounted = fs.unmount().isEmpty
            #expect(unmounted)
        }
    }
}
