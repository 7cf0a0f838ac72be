// What the CLI does with bad requests: a non-zero exit and a message saying
// what is wrong, and `faultfs umount` cleaning up after a killed daemon.
import Glibc
import Testing

/// Runs the faultfs executable (killed if still running after 60 s).
private func faultfs(_ arguments: [String]) throws -> CommandResult {
    try runCommand(try FaultFSBinary.path(), arguments, limitSeconds: 60)
}

/// Undoes mounts a wrong success may have left at `path` (above `keep` of them).
private func detachExtraMounts(_ path: String, keep: Int = 0) {
    for _ in 0..<5 where MountTable.entries().filter({ $0.mountPoint == path }).count > keep {
        umount2(path, Int32(MNT_DETACH))
    }
}

extension AllMountTests {
    @Suite(.timeLimit(.minutes(5)))
    struct BadInputTests {
        @Test("mount on a missing directory: non-zero exit, message names it")
        func mountOnMissingDirectory() throws {
            try MountedFS.requirePrerequisites()
            try withTemporaryDirectory("bad") { dir in
                let missing = dir + "/missing"
                let result = try faultfs(["mount", dir, missing])
                defer { detachExtraMounts(missing) }
                #expect(result.status != 0, "\(result)")
                #expect(result.stderr.contains(missing) && result.stderr.lowercased().contains("no such file"), "stderr: \(result.stderr)")
            }
        }

        @Test("mount on a regular file: non-zero exit, message says it is not a directory")
        func mountOnAFile() throws {
            try MountedFS.requirePrerequisites()
            try withTemporaryDirectory("bad") { dir in
                let file = dir + "/file"
                try writeFile(file, "x")
                let result = try faultfs(["mount", dir, file])
                defer { detachExtraMounts(file) }
                #expect(result.status != 0, "\(result)")
                #expect(result.stderr.contains(file) && result.stderr.lowercased().contains("not a directory"), "stderr: \(result.stderr)")
            }
        }

        @Test("mount on a live faultfs mount point: non-zero exit, message says it is mounted already")
        func mountTwice() throws {
            try withMount { fs in
                let result = try faultfs(["mount", fs.source, fs.mountpoint])
                defer { detachExtraMounts(fs.mountpoint, keep: 1) }
                #expect(result.status != 0, "\(result)")
                #expect(result.stderr.lowercased().contains("already"), "stderr: \(result.stderr)")
                #expect(MountTable.entries().filter { $0.mountPoint == fs.mountpoint }.count == 1, "a second mount was stacked")
            }
        }

        @Test("umount of a directory that is not mounted: non-zero exit with a message")
        func unmountNotMounted() throws {
            try MountedFS.requirePrerequisites()
            try withTemporaryDirectory("bad") { dir in
                let result = try faultfs(["umount", dir])
                #expect(result.status != 0, "\(result)")
                #expect(result.stderr.contains(dir), "stderr: \(result.stderr)")
            }
        }

        @Test("after kill -9 of the daemon, faultfs umount clears the dead mount")
        func unmountAfterKill() throws {
            try withMount { fs in
                fs.killDaemon()
                #expect(MountTable.hasFaultFSMount(fs.mountpoint), "the dead mount should still be listed")
                // (stat may still answer from the kernel's attribute cache; mkdir must ask the daemon.)
                let probe = sys { mkdir(fs.path("probe"), 0o755) }
                #expect(probe.errno == ENOTCONN, "mkdir in a dead mount: \(probe)")
                let result = try faultfs(["umount", fs.mountpoint])
                #expect(result.status == 0, "faultfs umount: \(result)")
                #expect(!MountTable.hasFaultFSMount(fs.mountpoint), "mountinfo still lists \(fs.mountpoint)")
            }
        }
    }
}
