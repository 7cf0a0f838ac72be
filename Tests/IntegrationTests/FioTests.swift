// fio writes with crc32c checksums, then reads everything back and verifies
// it: data integrity under a real I/O load.
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
    @Suite
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
                let arguments = ["--name=verify", "--directory=\(fs.mountpoint)", "--verify=crc32c", "--do_verify=1", "--verify_state_save=0",
                                 "--ioengine=psync", "--fsync_on_close=1"] + job.arguments
                let result = try runCommand(fio, arguments)
                #expect(result.status == 0, "fio \(arguments.joined(separator: " ")): \(result); daemon log: \(fs.log.suffix(2000))")
                let written = listDirectory(fs.source).1.compactMap { summary(fs.backing($0.name)) }
                #expect(written.map(\.size) == [job.fileSize], "fio's file in the backing dir: \(written)")
            }
        }
    }
}
