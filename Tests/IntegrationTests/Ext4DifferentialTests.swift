// A seeded random sequence of O_DIRECT / buffered / mmap / fallocate I/O and
// of chmod / setgid / ACL / umask operations, as root and as another user,
// run on the mount and on a plain ext4 directory: every result, mode, ACL,
// atime rule and byte must agree.
//
// Reproduce a failure with the seed it prints: FAULTFS_SEED=<seed> swift test --filter Ext4DifferentialTests
import Foundation
import Glibc
import Testing

private let seed: UInt64 = ProcessInfo.processInfo.environment["FAULTFS_SEED"].flatMap { UInt64($0) } ?? 20_261_130
private let stepCount = 400
private let nobodyID: uid_t = 65534

/// The tree under test and the ext4 reference, driven by one random sequence.
private final class Ext4Twins {
    let roots: [String]  // [through the mount, on ext4]
    var random = SeededRandom(seed: seed)
    private(set) var mismatches: [String] = []
    private var step = 0

    /// With the writeback cache the kernel keeps its own mtime/ctime and its
    /// direct_io write path does not move them (see README, O_DIRECT).
    let directWritesMoveTimes: Bool

    init(mount: String, ext4: String, writebackCache: Bool) {
        roots = [mount, ext4]
        directWritesMoveTimes = !writebackCache
    }

    func run(_ n: Int) throws {
        step = n
        switch Int.random(in: 0..<100, using: &random) {
        case 0..<12: try directWrite()
        case 12..<22: try bufferedWrite()
        case 22..<30: try directRead()
        case 30..<38: try bufferedRead()
        case 38..<46: try mmapWrite()
        case 46..<54: try fallocateRandom()
        case 54..<58: try truncateRandom()
        case 58..<64: try chmodRandom()
        case 64..<72: try asNobody()
        case 72..<80: try setfaclRandom()
        case 80..<86: try createAsNobody()
        case 86..<92: atimeRule()
        default: try statAndACL()
        }
    }

    /// Runs `operation` on both roots and expects the same description.
    /// With `watching` (a path under the root), the description also says
    /// whether the operation moved that file's mtime and ctime.
    private func both(_ what: String, watching: String? = nil, _ operation: (String) throws -> String) rethrows {
        let results = try roots.map { root in
            guard let watching else { return try operation(root) }
            let before = statOf(root + "/" + watching).1
            // Past the clock tick of the last change: the kernel stamps FUSE
            // inodes with coarse (jiffy) times, ext4 with fine ones once seen.
            usleep(10_000)
            let result = try operation(root)
            let after = statOf(root + "/" + watching).1
            return result + " mtime \(moved(before.st_mtim, after.st_mtim)) ctime \(moved(before.st_ctim, after.st_ctim))"
        }
        guard results[0] != results[1] else { return }
        let text = "seed \(seed), step \(step), \(what): through the mount \(results[0]), on ext4 \(results[1])"
        mismatches.append(text)
        Issue.record(Comment(rawValue: text))
    }

    private func file() -> String { ["a", "b", "c"].randomElement(using: &random)! }
    private func pages(_ range: ClosedRange<Int>) -> Int { Int.random(in: range, using: &random) * 4096 }
    private func fill() -> UInt8 { UInt8.random(in: 1...255, using: &random) }

    private func withOpen(_ path: String, _ flags: Int32, _ body: (Int32) throws -> String) rethrows -> String {
        let fd = open(path, flags | O_CLOEXEC, 0o666)
        guard fd >= 0 else { return "open \(errnoText(errno))" }
        defer { close(fd) }
        return try body(fd)
    }

    // MARK: data

    private func directWrite() throws {
        let name = file(), offset = pages(0...40), count = pages(1...16), byte = fill()
        try both("O_DIRECT pwrite \(count) at \(offset) of \(name)", watching: directWritesMoveTimes ? "t/\(name)" : nil) { root in
            try withOpen("\(root)/t/\(name)", O_RDWR | O_CREAT | Linux.O_DIRECT) { fd in
                try withAlignedBuffer(size: count) { buffer in
                    buffer.initializeMemory(as: UInt8.self, repeating: byte)
                    return sys { pwrite(fd, buffer.baseAddress, count, off_t(offset)) }.description
                }
            }
        }
    }

    private func bufferedWrite() throws {
        let name = file(), offset = Int.random(in: 0..<200_000, using: &random), count = Int.random(in: 1...20_000, using: &random), byte = fill()
        both("pwrite \(count) at \(offset) of \(name)", watching: "t/\(name)") { root in
            withOpen("\(root)/t/\(name)", O_RDWR | O_CREAT) { fd in
                pwriteBytes(fd, [UInt8](repeating: byte, count: count), at: offset).description
            }
        }
    }

    private func directRead() throws {
        let name = file(), offset = pages(0...40), count = pages(1...16)
        try both("O_DIRECT pread \(count) at \(offset) of \(name)") { root in
            try withOpen("\(root)/t/\(name)", O_RDONLY | Linux.O_DIRECT) { fd in
                try withAlignedBuffer(size: count) { buffer in
                    let n = sys { pread(fd, buffer.baseAddress, count, off_t(offset)) }
                    return "\(n) \(fnv1a(Array(buffer.prefix(max(n.value, 0)))))"
                }
            }
        }
    }

    private func bufferedRead() throws {
        let name = file()
        both("read all of \(name)") { root in
            switch readFile("\(root)/t/\(name)") {
            case .success(let bytes): "\(bytes.count) \(fnv1a(bytes))"
            case .failure(let error): "\(error)"
            }
        }
    }

    /// Writes through a shared mapping of a file opened buffered or with O_DIRECT.
    private func mmapWrite() throws {
        let name = file(), direct = Bool.random(using: &random), at = Int.random(in: 0..<8192, using: &random), byte = fill()
        both("mmap write at \(at) of \(name)\(direct ? " (O_DIRECT fd)" : "")", watching: "t/\(name)") { root in
            withOpen("\(root)/t/\(name)", O_RDWR | (direct ? Linux.O_DIRECT : 0)) { fd in
                var st = stat()
                fstat(fd, &st)
                guard st.st_size >= 8192 else { return "small" }
                guard let map = mmap(nil, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), map != MAP_FAILED else { return "mmap \(errnoText(errno))" }
                defer { munmap(map, 8192) }
                map.storeBytes(of: byte, toByteOffset: at, as: UInt8.self)
                return "msync \(sys { msync(map, 8192, MS_SYNC) })"
            }
        }
    }

    private func fallocateRandom() throws {
        let name = file(), offset = pages(0...30), length = pages(1...10)
        // allocate, keep size, punch hole, zero range
        let mode: Int32 = [0, 1, 3, 0x10].randomElement(using: &random)!
        both("fallocate mode \(mode) \(offset)+\(length) of \(name)", watching: "t/\(name)") { root in
            withOpen("\(root)/t/\(name)", O_RDWR) { fd in fallocate(fd, mode: mode, offset: offset, length: length).description }
        }
    }

    private func truncateRandom() throws {
        let name = file(), size = Int.random(in: 0..<180_000, using: &random)
        both("truncate \(name) \(size)", watching: "t/\(name)") { root in sys { truncate("\(root)/t/\(name)", off_t(size)) }.description }
    }

    // MARK: identity

    private func chmodRandom() throws {
        let name = file(), mode: mode_t = [0o644, 0o666, 0o6777, 0o6767, 0o2770, 0o600].randomElement(using: &random)!
        both("chmod \(String(mode, radix: 8)) \(name)", watching: "t/\(name)") { root in sys { chmod("\(root)/t/\(name)", mode) }.description }
    }

    /// Another user writes, truncates or fallocates (set-id bits must drop).
    private func asNobody() throws {
        let name = file()
        let command = [["sh", "-c", "printf x >> \"$0\""], ["truncate", "-s", "+4096"], ["fallocate", "-o", "0", "-l", "65536"],
                       ["fallocate", "-p", "-o", "4096", "-l", "4096"], ["fallocate", "-z", "-o", "0", "-l", "8192"]].randomElement(using: &random)!
        try both("as \(nobodyID): \(command.joined(separator: " ")) \(name)", watching: "t/\(name)") { root in
            let path = "\(root)/t/\(name)"
            let result = try runAsNobody(command + [path])
            return "\(result.status) \(summary(path).map(String.init(describing:)) ?? "missing")"
        }
    }

    private func setfaclRandom() throws {
        let name = file()
        let spec = [["-m", "u:\(nobodyID):rw"], ["-m", "u:\(nobodyID):r"], ["-m", "m::r"], ["-m", "g::rwx"], ["-b"],
                    ["-m", "u:\(nobodyID):rwx,m::rwx"]].randomElement(using: &random)!
        let byOwner = Bool.random(using: &random)
        try both("setfacl \(spec.joined(separator: " ")) \(name)\(byOwner ? " as \(nobodyID)" : "")", watching: "t/\(name)") { root in
            let path = "\(root)/t/\(name)"
            let result = byOwner ? try runAsNobody(["setfacl"] + spec + [path]) : try runCommand("setfacl", spec + [path])
            return "\(result.status) \(summary(path).map(String.init(describing:)) ?? "missing")"
        }
    }

    /// Another user creates under `t/inherit` (a default ACL, sometimes
    /// changed here) with a random umask.
    private func createAsNobody() throws {
        let umask = ["022", "077", "002", "027"].randomElement(using: &random)!, id = Int.random(in: 0..<6, using: &random)
        let what = ["touch", "mkdir"].randomElement(using: &random)!
        let changeDefault = Int.random(in: 0..<4, using: &random) == 0
        let spec = ["u::rwx,g::rx,o::r", "u::rwx,g::rwx,o::rwx,u:\(nobodyID):rwx", "u::rw,g::r,o::-"].randomElement(using: &random)!
        try both("umask \(umask); \(what) inherit/n\(id) as \(nobodyID)\(changeDefault ? " after setfacl -d -m \(spec)" : "")") { root in
            if changeDefault { _ = try runCommand("setfacl", ["-d", "-m", spec, "\(root)/t/inherit"]) }
            let path = "\(root)/t/inherit/n\(id)"
            let result = try runAsNobody(["sh", "-c", "umask \(umask); \(what) \"$0\"", path])
            return "\(result.status) \(summary(path).map(String.init(describing:)) ?? "missing") \(try aclText(path))"
        }
    }

    /// The relatime rule: after a read, atime is not older than mtime. (Data
    /// written with the writeback cache is synced first: until writeback the
    /// backing file's mtime is older than the one the kernel shows.)
    private func atimeRule() {
        let name = file()
        both("read, then atime >= mtime of \(name)") { root in
            let path = "\(root)/t/\(name)"
            let synced = withOpen(path, O_RDONLY) { fd in sys { fsync(fd) }.description }
            guard case .success = readFile(path) else { return "unreadable (\(synced))" }
            let st = statOf(path).1
            return "\(!isOlder(st.st_atim, than: st.st_mtim))"
        }
    }

    private func statAndACL() throws {
        let name = file()
        try both("stat and getfacl \(name)") { root in
            let path = "\(root)/t/\(name)"
            return "\(summary(path).map(String.init(describing:)) ?? "missing") \(try aclText(path))"
        }
    }

    /// Final state: every file's summary, bytes and ACL.
    func compareTrees() throws {
        for name in ["a", "b", "c"] + (0..<6).map({ "inherit/n\($0)" }) {
            try both("final \(name)") { root in
                let path = "\(root)/t/\(name)"
                guard let s = summary(path) else { return "missing" }
                let bytes = s.isDirectory ? [] : ((try? readFile(path).get()) ?? [])
                return "\(s) \(fnv1a(bytes)) \(try aclText(path))"
            }
        }
    }
}

private func moved(_ a: timespec, _ b: timespec) -> String {
    a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec ? "kept" : "moved"
}

private func isOlder(_ a: timespec, than b: timespec) -> Bool {
    a.tv_sec < b.tv_sec || (a.tv_sec == b.tv_sec && a.tv_nsec < b.tv_nsec)
}

/// `getfacl -cp` without the file name.
private func aclText(_ path: String) throws -> String {
    let result = try runCommand("getfacl", ["-cp", path])
    return result.status == 0 ? result.stdout.split(separator: "\n").joined(separator: ",") : "getfacl \(result.status)"
}

extension AllMountTests {
    @Suite
    struct Ext4DifferentialTests {
        @Test("400 seeded O_DIRECT/buffered/mmap/fallocate and chmod/ACL/umask steps, as root and another user, agree with ext4",
              arguments: [[], ["nowriteback"]])
        func randomSteps(options: [String]) throws {
            try requirePackages(["acl"]) { (try? resolveExecutable("setfacl")) != nil }
            print("ext4 differential: seed \(seed) (FAULTFS_SEED=\(seed) replays it), -o \(options)")
            try withMount(options: ["allow_other"] + options) { fs in
                try withExt4Directory { ext4 in
                    for root in [fs.mountpoint, ext4] {
                        try check("mkdir", sys { mkdir(root + "/t", 0o777) })
                        try check("chmod", sys { chmod(root + "/t", 0o1777) })
                        try check("mkdir", sys { mkdir(root + "/t/inherit", 0o777) })
                        try check("chmod", sys { chmod(root + "/t/inherit", 0o777) })
                        for name in ["a", "b", "c"] {
                            try writeFile(root + "/t/" + name, [UInt8](repeating: 0x11, count: 16_384))
                            try check("chown", sys { chown(root + "/t/" + name, nobodyID, 0) })
                            try check("chmod", sys { chmod(root + "/t/" + name, 0o666) })
                        }
                    }
                    let twins = Ext4Twins(mount: fs.mountpoint, ext4: ext4, writebackCache: !options.contains("nowriteback"))
                    for step in 0..<stepCount {
                        try twins.run(step)
                        if twins.mismatches.count >= 5 {
                            Issue.record("seed \(seed): stopped at step \(step) after 5 mismatches, -o \(options)")
                            break
                        }
                    }
                    try twins.compareTrees()
                }
            }
        }
    }
}
