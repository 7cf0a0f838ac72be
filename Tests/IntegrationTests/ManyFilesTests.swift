// More files than the daemon's RLIMIT_NOFILE (20,000 here): the daemon keeps
// a bounded number of fds (FDCache), whatever the kernel remembers.
import Glibc
import Testing

private let directoryCount = 100
private let filesPerDirectory = 300
private let fdLimit = 1_000

extension AllMountTests {
    @Suite
    struct ManyFilesTests {
        @Test("30,000 files in 100 dirs: create, find, du, delete; the daemon keeps fewer than 1,000 fds open")
        func thirtyThousandFiles() throws {
            try withMount { fs in
                var mostFDs = 0
                func sampleFDs() { mostFDs = max(mostFDs, openFDCount(pid: fs.pid)) }
                let payload = [UInt8](repeating: UInt8(ascii: "x"), count: 100)

                for d in 0..<directoryCount {
                    try check("mkdir d\(d)", sys { mkdir(fs.path("d\(d)"), 0o755) })
                    for f in 0..<filesPerDirectory { try writeFile(fs.path("d\(d)/f\(f)"), payload) }
                    if d % 10 == 9 { sampleFDs() }
                }

                let found = try runCommand("find", [fs.mountpoint])
                #expect(found.status == 0, "find: \(found.stderr.prefix(1000))")
                let expected = 1 + directoryCount + directoryCount * filesPerDirectory
                #expect(found.stdout.split(separator: "\n").count == expected, "find lists \(found.stdout.split(separator: "\n").count) paths")
                sampleFDs()

                let usage = try runCommand("du", ["-s", fs.mountpoint])
                #expect(usage.status == 0 && Int(usage.stdout.split(separator: "\t").first ?? "") ?? 0 > 0, "du -s: \(usage)")
                sampleFDs()

                for d in 0..<directoryCount {
                    for f in 0..<filesPerDirectory {
                        let removed = sys { unlink(fs.path("d\(d)/f\(f)")) }
                        if !removed.ok { Issue.record("unlink d\(d)/f\(f): \(removed)"); return }
                    }
                    let removed = sys { rmdir(fs.path("d\(d)")) }
                    #expect(removed.ok, "rmdir d\(d): \(removed)")
                    if d % 10 == 9 { sampleFDs() }
                }
                #expect(listDirectory(fs.mountpoint).1.isEmpty)
                #expect(listDirectory(fs.source).1.isEmpty, "the backing dir is not empty")
                sampleFDs()
                #expect(mostFDs < fdLimit, "the daemon had \(mostFDs) fds open (limit \(fdLimit))")
                #expect(openFDCount(pid: fs.pid) < fdLimit)
            }
        }
    }
}
