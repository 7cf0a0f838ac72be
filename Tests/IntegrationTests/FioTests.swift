// fio writes with crc32c checksums, then reads everything back and verifies
// it: data integrity under a real I/O load. Reads through the mount come
// mostly from the page cache, so after the unmount fio verifies the backing
// file itself (--verify_only replays the same job and only checks).
import Glibc
import Testing

/// One fio job: what differs between the runs.
struct FioJob: CustomTestStringConvertible, Sendable {
    var name: String
    var arguments: [String]
    var fileSize: Int
    var testDescription: String { name }
}

extension AllMountTests {
    @Suite(.timeLimit(.minutes(10)))
    struct FioTests {
        static let jobs = [
            FioJob(name: "random 4 KiB writes, 64 MiB", arguments: ["--rw=randwrite", "--bs=4k", "--size=64m"], fileSize: 64 << 20),
            FioJob(name: "sequential 1 MiB writes, 128 MiB", arguments: ["--rw=write", "--bs=1m", "--size=128m"], fileSize: 128 << 20),
        ]

        @Test("fio --verify=crc32c exits 0", arguments: jobs)
        func fioVerifies(job: FioJob) throws {
            let fio: String
            do { fio = try resolveExecutable("fio") } catch {
                Issue.record("fio is not in PATH: install it (apt-get install fio) to run the data integrity tests")
                throw error
            }
            try withMount { fs in
                let common = ["--name=verify", "--verify=crc32c", "--verify_state_save=0", "--ioengine=psync"] + job.arguments
                let arguments = common + ["--directory=\(fs.mountpoint)", "--do_verify=1", "--fsync_on_close=1"]
                let result = try runCommand(fio, arguments, limitSeconds: 300)
                #expect(result.status == 0, "fio \(arguments.joined(separator: " ")): \(result); daemon log: \(fs.log.suffix(2000))")
                let written = listDirectory(fs.source).1.compactMap { summary(fs.backing($0.name)) }
                #expect(written.map(\.size) == [job.fileSize], "fio's file in the backing dir: \(written)")

                #expect(fs.unmount().isEmpty, "unmount")
                let backing = common + ["--directory=\(fs.source)", "--verify_only", "--verify_fatal=1"]
                let verified = try runCommand(fio, backing, limitSeconds: 300)
                #expect(verified.status == 0 && !verified.stdout.contains("verify: bad"),
                        "fio --verify_only of the backing file after the unmount: \(verified)")
            }
        }
    }
}
