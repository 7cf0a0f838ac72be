// `faultfs run --fs`: a workload on a real ext4 or XFS whose disk faultfs
// serves, with a disk fault in the plan; the run folder's summary says what
// the file system did, from the kernel's messages (kernel.jsonl). Nothing of
// the block mount is left afterwards.
import Foundation
import Glibc
import Testing

/// Block mounts, loop devices, state directories and temporary directories of `faultfs run`.
private func runLeftovers() -> [String] {
    var found: [String] = []
    if let loops = try? runCommand("losetup", ["-a"]) {
        found += loops.stdout.split(separator: "\n").filter { $0.contains("faultfs%2Drun.") }.map { "loop: \($0)" }
    }
    found += MountTable.entries().filter { $0.mountPoint.contains("faultfs-run.") || $0.mountPoint.contains("faultfs%2Drun.") }
        .map { "mount: \($0.mountPoint) (\($0.type))" }
    let states = (try? FileManager.default.contentsOfDirectory(atPath: "/var/lib/faultfs/block")) ?? []
    found += states.filter { $0.contains("faultfs%2Drun.") }.map { "state directory \($0)" }
    return found
}

private func requireMkfs(_ fs: String, package: String) throws {
    try MountedFS.requirePrerequisites()
    guard access("/usr/sbin/mkfs." + fs, X_OK) != 0 && access("/sbin/mkfs." + fs, X_OK) != 0 else { return }
    let result = try runCommand("apt-get", ["-o", "DPkg::Lock::Timeout=300", "install", "-y", "-qq", package])
    guard result.status == 0 else { throw SetupError("apt-get install \(package): \(result)") }
}

extension AllMountTests {
    @Suite(.timeLimit(.minutes(10)))
    struct BlockRunTests {
        @Test("faultfs run --fs: a failed journal write; the summary says ext4 aborted its journal, XFS shut down",
              arguments: [("ext4", "e2fsprogs", "ext4 aborted its journal"), ("xfs", "xfsprogs", "xfs shut down")])
        func journalFault(fs: String, package: String, expected: String) throws {
            try requireMkfs(fs, package: package)
            try withTemporaryDirectory("blockrun") { out in
                let result = try runCommand(try FaultFSBinary.path(), [
                    "run", "--fs", fs, "--size", "400M", "--quiet", "--out", out + "/run",
                    "--fault", "fail write EIO region=journal",
                    "--", "sh", "-c", "cd \"$FAULTFS_DIR\" && echo x > f; sync",
                ], limitSeconds: 300)
                #expect(runLeftovers().isEmpty, "\(runLeftovers())")
                let summary = (try? String(contentsOfFile: out + "/run/summary.txt", encoding: .utf8)) ?? ""
                #expect(summary.contains("file system: " + expected), "\(summary)\n\(result)")
                #expect(summary.contains("after the first injected write error"), "\(summary)")
                let kernel = (try? String(contentsOfFile: out + "/run/kernel.jsonl", encoding: .utf8)) ?? ""
                let kinds = kernel.split(separator: "\n").compactMap {
                    (try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])?["kind"] as? String
                }
                #expect(kinds.contains(fs == "xfs" ? "shutdown" : "journal_aborted"), "\(kernel)")
                let report = (try? String(contentsOfFile: out + "/run/report.html", encoding: .utf8)) ?? ""
                #expect(report.contains(expected), "the report names it too")
            }
        }

        @Test("faultfs run --fs refuses a bad disk rule before mounting anything")
        func badDiskRule() throws {
            try requireMkfs("ext4", package: "e2fsprogs")
            try withTemporaryDirectory("blockrun") { out in
                let result = try runCommand(try FaultFSBinary.path(), [
                    "run", "--fs", "ext4", "--quiet", "--out", out + "/run",
                    "--fault", "fail write EIO offset=0", "--", "true",
                ], limitSeconds: 120)
                #expect(result.status != 0)
                #expect(result.stderr.contains("sectors="), "\(result)")
                #expect(runLeftovers().isEmpty, "\(runLeftovers())")
            }
        }
    }
}
