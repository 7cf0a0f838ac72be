// With -o allow_other, other users use the mount, and the passthrough must
// act as them: new inodes are theirs, setgid and sticky directories and
// permission bits behave as on a local file system.
import Glibc
import Testing

/// uid and gid of the unprivileged user the tests act as (nobody:nogroup).
private let nobody: uid_t = 65534

/// Runs `command` as 65534:65534 with no supplementary groups.
private func asNobody(_ command: [String]) throws -> CommandResult {
    try runCommand("setpriv", ["--reuid=\(nobody)", "--regid=\(nobody)", "--clear-groups"] + command)
}

/// Runs one Perl call (e.g. `unlink($ARGV[0])`) as 65534 on `path`; returns
/// the errno it failed with, 0 when it succeeded.
private func errnoAsNobody(_ perlCall: String, _ path: String) throws -> Int32 {
    try asNobody(["perl", "-e", "\(perlCall) or exit($! + 0); exit 0", path]).status
}

/// mkdir + chmod + chown in the source before mounting (chmod because of the umask).
private func makeDirectory(_ path: String, mode: mode_t, gid: gid_t = 0) throws {
    try check("mkdir \(path)", sys { mkdir(path, 0o700) })
    try check("chown \(path)", sys { chown(path, 0, gid) })
    try check("chmod \(path)", sys { chmod(path, mode) })
}

extension AllMountTests {
    @Suite(.timeLimit(.minutes(5)))
    struct OwnershipTests {
        @Test("inodes created by another user (touch, mkdir, ln -s, mkfifo, >) are owned by that user")
        func createdAsTheCaller() throws {
            try withMount(options: ["allow_other"], prepare: { try makeDirectory($0 + "/d", mode: 0o1777) }) { fs in
                let commands: [(name: String, command: [String])] = [
                    ("file", ["touch", fs.path("d/file")]),
                    ("dir", ["mkdir", fs.path("d/dir")]),
                    ("link", ["ln", "-s", "file", fs.path("d/link")]),
                    ("fifo", ["mkfifo", fs.path("d/fifo")]),
                    ("written", ["sh", "-c", "echo data > \(fs.path("d/written"))"]),
                ]
                for (name, command) in commands {
                    let result = try asNobody(command)
                    #expect(result.status == 0, "\(command.joined(separator: " ")) as \(nobody): \(result)")
                    let backing = summary(fs.backing("d/\(name)"))
                    #expect(backing?.uid == nobody && backing?.gid == nobody,
                            "backing d/\(name) should be owned by \(nobody):\(nobody): \(backing.map(String.init(describing:)) ?? "missing")")
                    #expect(summary(fs.path("d/\(name)")) == backing, "d/\(name) through the mount and in the backing dir")
                }
            }
        }

        /// faultfs runs the connection with FUSE_HANDLE_KILLPRIV_V2, so the
        /// kernel leaves this to the daemon; the result must be ext4's.
        @Test("a write, a truncate or an O_TRUNC open by another user clears setuid and setgid", arguments: [[], ["nowriteback"]])
        func modificationClearsSetIDBits(options: [String]) throws {
            try withMount(options: ["allow_other"] + options, prepare: { try makeDirectory($0 + "/d", mode: 0o1777) }) { fs in
                for name in ["appended", "truncated", "replaced"] {
                    try writeFile(fs.path("d/" + name), "x\n")
                    try check("chmod d/\(name)", sys { chmod(fs.path("d/" + name), 0o6777) })
                }
                let script = "echo more >> \(fs.path("d/appended")); truncate -s 1 \(fs.path("d/truncated")); echo y > \(fs.path("d/replaced"))"
                let result = try asNobody(["sh", "-c", script])
                #expect(result.status == 0, "\(result)")
                for name in ["appended", "truncated", "replaced"] {
                    #expect(summary(fs.path("d/" + name))?.permissions == 0o777, "d/\(name) through the mount")
                    #expect(summary(fs.backing("d/" + name))?.permissions == 0o777, "d/\(name) in the backing dir")
                }
                // Root (CAP_FSETID) keeps the bits.
                try check("chmod d/appended", sys { chmod(fs.path("d/appended"), 0o6777) })
                let fd = open(fs.path("d/appended"), O_WRONLY | O_APPEND)
                #expect(pwriteBytes(fd, Array("root\n".utf8), at: 0).ok)
                close(fd)
                #expect(summary(fs.path("d/appended"))?.permissions == 0o6777)
            }
        }

        @Test("setgid directory: new files get its group, new subdirs also its setgid bit")
        func setgidDirectory() throws {
            let group: gid_t = 100
            try withMount(options: ["allow_other"], prepare: { source in
                try makeDirectory(source + "/g", mode: 0o2775, gid: group)
                try makeDirectory(source + "/open", mode: 0o2777, gid: group)
            }) { fs in
                try writeFile(fs.path("g/file"), "x")
                try check("mkdir g/sub", sys { mkdir(fs.path("g/sub"), 0o755) })
                let file = summary(fs.backing("g/file")), sub = summary(fs.backing("g/sub"))
                #expect(file?.gid == group, "g/file as root: \(file.map(String.init(describing:)) ?? "missing")")
                #expect(sub?.gid == group, "g/sub: \(sub.map(String.init(describing:)) ?? "missing")")
                #expect((sub?.permissions ?? 0) & S_ISGID != 0, "g/sub lacks the setgid bit: \(sub.map(String.init(describing:)) ?? "missing")")

                let result = try asNobody(["touch", fs.path("open/file")])
                #expect(result.status == 0, "touch as \(nobody): \(result)")
                let other = summary(fs.backing("open/file"))
                #expect(other?.uid == nobody && other?.gid == group, "open/file by \(nobody): \(other.map(String.init(describing:)) ?? "missing")")
            }
        }

        @Test("sticky directory: another user cannot delete root's file (EPERM), but can delete their own")
        func stickyDirectory() throws {
            try withMount(options: ["allow_other"], prepare: { source in
                try makeDirectory(source + "/s", mode: 0o1777)
                try writeFile(source + "/s/roots", "root's")
            }) { fs in
                let failed = try errnoAsNobody("unlink($ARGV[0])", fs.path("s/roots"))
                #expect(failed == EPERM, "unlink of root's file in a sticky dir as \(nobody): \(errnoText(failed)), expected EPERM")
                #expect(summary(fs.backing("s/roots")) != nil, "root's file was deleted")

                #expect(try asNobody(["touch", fs.path("s/mine")]).status == 0)
                let own = try errnoAsNobody("unlink($ARGV[0])", fs.path("s/mine"))
                #expect(own == 0, "unlink of one's own file in a sticky dir: \(errnoText(own))")
            }
        }

        @Test("chmod by a non-owner fails with EPERM")
        func chmodByNonOwner() throws {
            try withMount(options: ["allow_other"], prepare: { try writeFile($0 + "/roots", "x", mode: 0o644) }) { fs in
                let failed = try errnoAsNobody("chmod(0777, $ARGV[0])", fs.path("roots"))
                #expect(failed == EPERM, "chmod as \(nobody): \(errnoText(failed)), expected EPERM")
                #expect(summary(fs.backing("roots"))?.permissions == 0o644)
            }
        }

        @Test("reading root's 0600 file as another user fails with EACCES")
        func readingAPrivateFile() throws {
            try withMount(options: ["allow_other"], prepare: { try writeFile($0 + "/secret", "secret", mode: 0o600) }) { fs in
                let failed = try errnoAsNobody("open(my $f, '<', $ARGV[0])", fs.path("secret"))
                #expect(failed == EACCES, "open for reading as \(nobody): \(errnoText(failed)), expected EACCES")
                let written = try errnoAsNobody("open(my $f, '>>', $ARGV[0])", fs.path("secret"))
                #expect(written == EACCES, "open for appending as \(nobody): \(errnoText(written)), expected EACCES")
            }
        }
    }
}
